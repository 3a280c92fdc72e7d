"""Stopping rules for many probes trained together."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info


class AllProbesPlateau(Callback):
    """Stop training once no probe has improved its best val acc for ``patience`` val epochs.

    A plain ``EarlyStopping`` on one aggregate would stop while some layers/heads are still
    learning; each probe's best state is kept anyway, so training only needs to go on while
    at least one probe improves. Reads ``MultiProbe.last_improved``, set after each val epoch.
    """

    def __init__(self, patience: int = 3, verbose: bool = False) -> None:
        super().__init__()
        if patience < 1:
            raise ValueError("patience must be >= 1")
        self.patience = patience
        self.verbose = verbose
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking or trainer.fast_dev_run:
            return
        improved = getattr(pl_module, "last_improved", None)
        if improved is None:
            raise TypeError("AllProbesPlateau needs a module with `last_improved` (MultiProbe)")
        self.wait = 0 if bool(improved.any()) else self.wait + 1
        should_stop = trainer.strategy.reduce_boolean_decision(
            self.wait >= self.patience, all=False
        )
        if should_stop:
            trainer.should_stop = True
            self.stopped_epoch = trainer.current_epoch
            if self.verbose:
                rank_zero_info(
                    f"AllProbesPlateau: no probe improved for {self.wait} validation epochs; "
                    f"stopping at epoch {trainer.current_epoch}."
                )

    def state_dict(self) -> dict[str, Any]:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait = state_dict["wait"]
        self.stopped_epoch = state_dict["stopped_epoch"]
