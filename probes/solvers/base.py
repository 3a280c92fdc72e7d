"""What a solver returns: data, never logged or formatted by the solver itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
class Solved:
    """Every candidate of every (label set, seed), in plan order (label sets, then seeds)."""

    groups: list[Candidates]
    #: full batch: every slot solved and its metrics per probe (the penalty path)
    slots: list[Slot] = field(default_factory=list)
    metrics: SlotMetrics | None = None
