"""Stopping rules for many probes trained together."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info


class AllProbesPlateau(Callback):
    """Plateau stopping per probe; training ends once every probe has stopped.

    A probe whose best val acc has not improved for ``patience`` val epochs stops: it keeps
    its best state and takes no further updates (``MultiProbe.stop_probes``), exactly as if
    it had been trained alone with the same rule. Reads ``MultiProbe.last_improved``.
    """

    def __init__(self, patience: int = 3, verbose: bool = False) -> None:
        super().__init__()
        if patience < 1:
            raise ValueError("patience must be >= 1")
        self.patience = patience
        self.verbose = verbose
        self.wait: torch.Tensor | None = None
        self.stopped_epoch: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking or trainer.fast_dev_run:
            return
        improved = getattr(pl_module, "last_improved", None)
        if improved is None or not hasattr(pl_module, "stop_probes"):
            raise TypeError("AllProbesPlateau needs a module with `last_improved` (MultiProbe)")
        improved = improved.cpu()
        wait = torch.zeros_like(improved, dtype=torch.long) if self.wait is None else self.wait
        self.wait = torch.where(improved, torch.zeros_like(wait), wait + 1)
        pl_module.stop_probes(self.wait >= self.patience)
        all_stopped = bool(pl_module.stopped.all())
        if trainer.strategy.reduce_boolean_decision(all_stopped, all=False):
            trainer.should_stop = True
            self.stopped_epoch = trainer.current_epoch
            if self.verbose:
                rank_zero_info(
                    f"AllProbesPlateau: every probe has stopped; ending at epoch "
                    f"{trainer.current_epoch}."
                )

    def state_dict(self) -> dict[str, Any]:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait = state_dict["wait"]
        self.stopped_epoch = state_dict["stopped_epoch"]
