"""What a solver returns: data, never logged or formatted by the solver itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from probes.full_batch import Slot, SlotMetrics
from probes.plan import LabelSet


@dataclass
class Candidates:
    """One (label set, seed) of a view: ``rows[c][k]`` is probe ``k``'s row under candidate
    ``c``. Candidates come in order of preference, so a tie on validation goes to the first
    (the strongest penalty, the simplest model)."""

    labels: LabelSet
    seed: int
    rows: list[list[dict[str, Any]]]
    #: full batch: the slot of each candidate (``Solved.slots``)
    slots: list[int] = field(default_factory=list)


@dataclass
class TestedProbe:
    """Adam, ``probing.save_weights``: one probe's slot of the first (label set, seed) as it
    was tested (its best epoch's parameters, each without the slot axis), with the input
    standardisation it applied (``(x - mean) / std``)."""

    family: str  # ``ProbeFamily.name``
    apply: str  # one line: how ``state`` maps standardised features to logits
    state: dict[str, Tensor]
    mean: Tensor
    std: Tensor


@dataclass
class Solved:
    """Every candidate of every (label set, seed), in plan order (label sets, then seeds)."""

    groups: list[Candidates]
    #: full batch: every slot solved and its metrics per probe (the penalty path)
    slots: list[Slot] = field(default_factory=list)
    metrics: SlotMetrics | None = None
    #: Adam with ``probing.save_weights``: (probe, candidate of ``groups[0]``) -> that slot as
    #: tested, looked up once selection has chosen
    tested: Callable[[int, int], TestedProbe] | None = None
