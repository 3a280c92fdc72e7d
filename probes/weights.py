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
from torch import Tensor

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
        pick = choices[0][k]
        if solved.tested is not None:
            probes[name] = _tested_payload(solved.tested(k, pick), plan.combos[pick])
        elif solved.metrics is not None and solved.metrics.weights is not None:
            slot = task.slots[pick]
            weight, bias, mean, std = solved.metrics.weights[k]
            weight, bias = _all_logits(weight[:, slot], bias[slot], view.num_classes)
            weight, bias = fold_standardisation(weight, bias, mean, std.reciprocal())
            probes[name] = {"weight": weight, "bias": bias, "l2": solved.slots[slot].l2}
        else:
            raise RuntimeError(f"probing.save_weights: the solver of {plan.prefix} kept no weights")
        probes[name]["identity"] = dataclasses.asdict(view.probe_ids[k]) if view.probe_ids else None
    path = weights_file(weights_dir, plan.prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"prefix": plan.prefix, "classes": list(view.class_names), "probes": probes}
    tmp = path.with_suffix(".partial")  # a killed run leaves no half-written file behind
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def fold_standardisation(
    w: Tensor, b: Tensor, mean: Tensor, scale: Tensor
) -> tuple[Tensor, Tensor]:
    """``((x - mean) * scale) @ w + b`` as ``x @ w' + b'``: the (D, C) weight and (C,) bias of
    a probe trained on standardised features (``scale``: 1 / std), on the raw ones."""
    return w * scale.unsqueeze(-1), b - (mean * scale) @ w


def _all_logits(w: Tensor, b: Tensor, classes: int) -> tuple[Tensor, Tensor]:
    """A binary solve's one free logit (class 1 against class 0 at zero) as both columns."""
    if w.shape[-1] == classes:
        return w, b
    return torch.cat([w.new_zeros(w.shape[0], 1), w], -1), torch.cat([b.new_zeros(1), b])


def _tested_payload(probe: TestedProbe, combo: dict[str, Any]) -> dict[str, Any]:
    """An Adam probe's file entry: linear on raw features (folded as ``standardised_affine``
    applies it), else its state, input stats and ``apply``."""
    if probe.family == "linear":
        w, b = probe.state["weights.0"], probe.state["biases.0"]
        weight, bias = fold_standardisation(w, b, probe.mean, probe.std.reciprocal())
        return {"weight": weight, "bias": bias, "l2": combo.get("l2", 0.0), "select": dict(combo)}
    return {
        "family": probe.family,
        "state_dict": probe.state,
        "mean": probe.mean,
        "std": probe.std,
        "apply": f"z = (x - mean) / std; {probe.apply}",
        "select": dict(combo),
    }
