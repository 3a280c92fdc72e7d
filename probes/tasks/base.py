"""What every task returns, so one function can write results, figures and W&B for all."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from vlprobe.cache.reader import CacheReader


@dataclass
class TaskOutput:
    rows: list[dict[str, Any]]  # one per probe (layer / head) or per measured unit
    columns: list[str]  # the columns of the console summary, in order
    figures: dict[str, Path] = field(default_factory=dict)  # figure key -> PNG
    summary: dict[str, Any] = field(default_factory=dict)  # headline numbers for W&B summary
    console_rows: list[dict[str, Any]] | None = None  # a shorter selection for the console


class Task(Protocol):
    name: str
    dataset: str | None  # the cache run() opens; None: the task builds its own (several)

    def execute(
        self, reader: CacheReader | None, cfg: DictConfig, loggers: list[Any], out_dir: Path
    ) -> TaskOutput: ...
