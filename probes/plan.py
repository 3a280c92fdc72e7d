"""The slots of a view, built once: label sets x penalties x ``probing.select`` combinations
x seeds, and the solver that trains them.

A *label set* is what a probe learns (the task's labels, the control task's, a shuffle per
seed). The Adam solver trains every label set x combination (linear probes: x L2 penalty)
x seed as a slot of one loop (each seed on its own batches); the full-batch solver trains
every label set x penalty once, since its start and the task and control labels do not
depend on the seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from datamodules.views import FeatureView
from probes.settings import Probing, Settings
from vlprobe.analysis.controls import control_labels, shuffled_labels
from vlprobe.cache.schema import SPLIT_IDS

#: probe arguments that change how a slot trains, not the shape of its parameters: they ride
#: the slot axis of one module; the others (width, depth, rank, lr) get a module of their own
SLOT_KEYS = ("dropout", "weight_decay", "l2")


@dataclass(frozen=True)
class LabelSet:
    """Labels a probe is trained on: the task's, the control task's or a shuffle (per seed)."""

    kind: str  # task | control | shuffled
    labels: np.ndarray
    seed: int | None = None  # shuffles depend on the seed; task and control labels do not

    def prefix(self, name_prefix: str) -> str:
        return name_prefix if self.kind == "task" else f"{self.kind}/{name_prefix}"


@dataclass(frozen=True)
class Plan:
    """Every slot of one view, and which solver trains them."""

    prefix: str  # row names are ``<prefix>/<probe>``
    seeds: list[int]
    sets: list[LabelSet]
    solver: str  # lbfgs | sgd
    #: Adam: each combination of ``probing.select`` (linear: x penalty, strongest first)
    combos: list[dict[str, Any]]
    #: full batch: the L2 penalties, weakest first (the slot order of the solve)
    grid: list[float]

    def sets_of(self, seed: int) -> list[int]:
        """Indices in ``sets`` of the label sets a seed trains: the seed-free ones and its
        own shuffle."""
        return [j for j, ls in enumerate(self.sets) if ls.seed in (None, seed)]

    def tag(self, base: str, seed: int) -> str:
        """A slot's name for loggers: ``<base>/seed<s>`` when the run has several seeds."""
        return f"{base}/seed{seed}" if len(self.seeds) > 1 else base


def make_plan(view: FeatureView, settings: Settings, prefix: str) -> Plan:
    """The plan of ``view`` under the run's settings (``solver_for`` picks the solver)."""
    seeds = settings.seed_list()
    return Plan(
        prefix=prefix,
        seeds=seeds,
        sets=label_sets(view, settings.probing, seeds),
        solver=settings.solver_for(view),
        combos=combinations(settings.probing, settings.linear()),
        grid=sorted(float(v) for v in settings.probing.l2_grid),
    )


def label_sets(view: FeatureView, probing: Probing, seeds: list[int]) -> list[LabelSet]:
    sets = [LabelSet("task", view.labels)]
    if probing.control:
        sets.append(LabelSet("control", control_task(view)))
    if probing.shuffled_control:
        sets += [LabelSet("shuffled", shuffled(view, seed), seed) for seed in seeds]
    return sets


def combinations(probing: Probing, linear: bool) -> list[dict[str, Any]]:
    """Every combination of ``probing.select``; linear probes also try every penalty of
    ``probing.l2_grid`` (strongest first), unless ``l2`` is selected explicitly."""
    select = {key: list(values) for key, values in (probing.select or {}).items()}
    if linear and "l2" not in select:
        select["l2"] = sorted((float(v) for v in probing.l2_grid), reverse=True)
    return [
        dict(zip(select, values, strict=True)) for values in itertools.product(*select.values())
    ]


def group_by_shape(combos: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[int]]]:
    """Combinations that build parameters of one shape (they differ in ``SLOT_KEYS`` only),
    in order of first appearance: (the shape's probe arguments, combination indices)."""
    groups: dict[tuple, tuple[dict[str, Any], list[int]]] = {}
    for c, combo in enumerate(combos):
        shape = {key: v for key, v in combo.items() if key not in SLOT_KEYS}
        groups.setdefault(tuple(shape.items()), (shape, []))[1].append(c)
    return list(groups.values())


def majority_chance(view: FeatureView) -> float:
    """Test accuracy of always answering the most frequent training label."""
    train = view.labels[view.rows(SPLIT_IDS["train"])]
    test = view.labels[view.rows(SPLIT_IDS["test"])]
    if train.size == 0 or test.size == 0:
        return float("nan")
    return float(np.mean(test == np.bincount(train).argmax()))


def control_task(view: FeatureView) -> np.ndarray:
    """Each type keeps one random label drawn from the task's label distribution."""
    if view.control_types is None:
        raise ValueError("this task defines no control types; run without probing.control")
    used = view.labels >= 0
    control = np.full_like(view.labels, -1)
    control[used] = control_labels(
        view.control_types[used], view.labels[used], view.num_classes, seed=0
    )
    return control


def shuffled(view: FeatureView, seed: int) -> np.ndarray:
    used = view.labels >= 0
    out = view.labels.copy()
    out[used] = shuffled_labels(view.labels[used], seed=seed)
    return out
