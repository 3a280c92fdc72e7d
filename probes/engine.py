"""Train one fused MultiProbe over a feature view and return one result row per probe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from datamodules.cache_datamodule import CacheProbeDataModule
from datamodules.views import FeatureView
from vlprobe.cache.schema import SPLIT_IDS

PROBE_SELECTION_KEYS = ("layers",)


def probe_factory(probe_cfg: DictConfig) -> Callable[..., pl.LightningModule]:
    """The partially-applied probe class; selection keys (layers) are not probe arguments."""
    kwargs = OmegaConf.to_container(probe_cfg, resolve=True)
    for key in PROBE_SELECTION_KEYS:
        kwargs.pop(key, None)  # type: ignore[union-attr]
    return instantiate(kwargs)


def majority_chance(view: FeatureView) -> float:
    """Test accuracy of always answering the most frequent training label."""
    train = view.labels[view.rows(SPLIT_IDS["train"])]
    test = view.labels[view.rows(SPLIT_IDS["test"])]
    if train.size == 0 or test.size == 0:
        return float("nan")
    return float(np.mean(test == np.bincount(train).argmax()))


def train_view(
    view: FeatureView,
    cfg: DictConfig,
    loggers: list[Any],
    name_prefix: str,
) -> list[dict[str, Any]]:
    """Train all probes of ``view`` in one pass per epoch; test each at its best epoch."""
    loader = cfg.data.loader
    dm = CacheProbeDataModule(
        view,
        batch_size=loader.batch_size,
        mode=loader.mode,
        memory_budget_mb=loader.memory_budget_mb,
        num_workers=loader.num_workers,
        seed=cfg.seed,
    )
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    chance = majority_chance(view)
    x = dm.datasets["train"][0]["x"]
    model = probe_factory(cfg.probe)(
        num_probes=x.shape[0],
        in_dim=x.shape[1],
        num_classes=view.num_classes,
        probe_names=[f"{name_prefix}/{n}" for n in view.probe_names],
        chance=chance,
    )
    model.set_input_stats(*dm.input_stats())
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    sizes = {f"n_{s}": len(ds) for s, ds in dm.datasets.items()}
    rows = []
    for probe_name, row in zip(view.probe_names, model.results(), strict=True):
        rows.append({"probe": probe_name, **row, "name": f"{name_prefix}/{probe_name}", **sizes})
    return rows
