"""``probing.save_weights``: the chosen probes' weights, usable without vlprobe.

One file per probed input (``<weights_dir>/<prefix>.pt``, ``torch.load``-able): per probe of
the task labels (first seed) its chosen candidate, as it produced the row's test accuracy.
Linear probes (either solver): the weight (D, C) and bias (C,) on the cache's *raw* features
(the standardisation folded in), so ``features @ weight + bias`` are its logits over
``classes``, with its penalty and identity. MLP / low-rank probes (Adam): the probe's
``state_dict`` (probe axis dropped), the input ``mean`` / ``std`` and a one-line ``apply``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from datamodules.views import FeatureView
from probes.plan import Plan
from probes.solvers.base import Solved, TestedProbe


def weights_file(weights_dir: Path, prefix: str) -> Path:
    return weights_dir / f"{prefix.replace('/', '__')}.pt"


def save_chosen_weights(
    weights_dir: Path, view: FeatureView, plan: Plan, solved: Solved, choices: list[list[int]]
) -> Path:
    """The task probes' chosen weights of ``view`` (its first label set and seed)."""
    task = solved.groups[0]
    probes: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(view.probe_names):
        if solved.tested is not None:
            probes[name] = _tested_payload(solved.tested[k], plan.combos, choices[0][k])
        elif solved.metrics is not None and solved.metrics.weights is not None:
            slot = task.slots[choices[0][k]]
            weight, bias = solved.metrics.weights[k]
            probes[name] = {
                "weight": weight[:, slot].clone(),
                "bias": bias[slot].clone(),
                "l2": solved.slots[slot].l2,
            }
        else:
            raise RuntimeError(f"probing.save_weights: the solver of {plan.prefix} kept no weights")
        probes[name]["identity"] = dataclasses.asdict(view.probe_ids[k]) if view.probe_ids else None
    path = weights_file(weights_dir, plan.prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"prefix": plan.prefix, "classes": list(view.class_names), "probes": probes}
    torch.save(payload, path)
    return path


def _tested_payload(probe: TestedProbe, combos: list[dict[str, Any]], pick: int) -> dict[str, Any]:
    """An Adam probe's file entry: linear on raw features (folded as ``standardised_affine``
    does: ``w / std``, ``b - (mean / std) @ w``), else its state, input stats and ``apply``."""
    if probe.candidate != pick:  # the solver chose with selection's own rule: a bug if not
        raise RuntimeError(f"saved candidate {probe.candidate} is not the chosen {pick}")
    combo = dict(combos[pick])
    if probe.family == "linear":
        scale = probe.std.reciprocal()
        w, b = probe.state["weights.0"], probe.state["biases.0"]
        return {
            "weight": w * scale.unsqueeze(-1),
            "bias": b - (probe.mean * scale) @ w,
            "l2": combo.get("l2", 0.0),
            "select": combo,
        }
    return {
        "family": probe.family,
        "state_dict": probe.state,
        "mean": probe.mean,
        "std": probe.std,
        "apply": f"z = (x - mean) / std; {probe.apply}",
        "select": combo,
    }
