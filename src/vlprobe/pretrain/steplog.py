"""Every pre-training step's losses, for both stages: ``pretrain_log.csv`` and a logger.

Pre-training used to keep only its last step (``pretrain.json``'s ``final``): whether a loss
fell, or ITM ever left chance, could not be seen. Each stage's module keeps its step's values
in ``step_values``; a callback per stage appends them as one row with a step count that runs
on across the two stages, so one logger gets one curve (a second ``fit`` restarts Lightning's
own step at 0, which W&B would drop as going back in time).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger


class PretrainLog:
    """Rows ``{step, stage, <objective>: value}``; also sent to ``logger`` when one is given."""

    def __init__(self, logger: Logger | None = None) -> None:
        self.rows: list[dict[str, Any]] = []
        self.logger = logger

    def record(self, stage: str, values: dict[str, float]) -> None:
        step = len(self.rows)
        self.rows.append({"step": step, "stage": stage, **values})
        if self.logger is not None:
            self.logger.log_metrics({f"pretrain/{stage}/{k}": v for k, v in values.items()}, step)

    def callback(self, stage: str) -> pl.Callback:
        return _StageRows(self, stage)

    def write(self, path: Path) -> None:
        """The rows as CSV; an objective a stage does not have is an empty cell."""
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(self.rows)
        if self.logger is not None:
            self.logger.save()


class _StageRows(pl.Callback):
    def __init__(self, log: PretrainLog, stage: str) -> None:
        self.sink, self.stage = log, stage

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *_: Any) -> None:
        self.sink.record(self.stage, dict(pl_module.step_values))
