"""``probing.save_weights``: the chosen probes' weights, usable without vlprobe.

One file per probed input (``<weights_dir>/<prefix>.pt``, ``torch.load``-able): per probe the
weight (D, C) and bias (C,) on the cache's *raw* features (the solve's standardisation folded
in), so ``features @ weight + bias`` are its logits over ``classes``, with its penalty and
identity. Only the full-batch L-BFGS solver keeps its solutions; the Adam path says so.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from datamodules.views import FeatureView
from probes.plan import Plan
from probes.solvers.base import Solved

log = logging.getLogger(__name__)


def weights_file(weights_dir: Path, prefix: str) -> Path:
    return weights_dir / f"{prefix.replace('/', '__')}.pt"


def save_chosen_weights(
    weights_dir: Path, view: FeatureView, plan: Plan, solved: Solved, choices: list[list[int]]
) -> Path | None:
    """The task probes' chosen weights of ``view`` (its first label set and seed); ``None``
    (and one line) when the solver kept none."""
    if solved.metrics is None or solved.metrics.weights is None:
        log.warning(
            "probing.save_weights: %s was trained by Adam (probing.solver=sgd, a non-linear "
            "family, or a view larger than loader.memory_budget_mb), which keeps no weights; "
            "only full-batch L-BFGS probes are saved",
            plan.prefix,
        )
        return None
    task = solved.groups[0]
    probes: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(view.probe_names):
        slot = task.slots[choices[0][k]]
        weight, bias = solved.metrics.weights[k]
        probes[name] = {
            "weight": weight[:, slot].clone(),
            "bias": bias[slot].clone(),
            "l2": solved.slots[slot].l2,
            "identity": dataclasses.asdict(view.probe_ids[k]) if view.probe_ids else None,
        }
    path = weights_file(weights_dir, plan.prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"prefix": plan.prefix, "classes": list(view.class_names), "probes": probes}
    torch.save(payload, path)
    return path
