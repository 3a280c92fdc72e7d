"""Train fused MultiProbes over a feature view: seeds, controls and MDL, one row per probe.

Data are loaded (or opened) once per view; every seed, the control task and each MDL block
reuse them. Rows carry the mean over seeds with standard deviation and 95% confidence
half-width, the Wilson 95% interval of the test accuracy over the test examples, the control
accuracy and selectivity, and the MDL code length when asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from datamodules.cache_datamodule import CacheProbeDataModule
from datamodules.views import FeatureView
from vlprobe.analysis.controls import (
    control_labels,
    lookup_ceiling,
    selectivity,
    shuffled_labels,
)
from vlprobe.analysis.mdl import MDL_C_GRID, l2_strength, online_blocks, online_codelength
from vlprobe.analysis.stats import mean_std_ci, wilson_interval
from vlprobe.cache.schema import SPLIT_IDS

# row columns averaged over seeds (each probe's best epoch and val F1 too, not the first seed's)
SEED_METRICS = ("test_acc", "val_acc", "test_f1", "val_f1", "best_epoch")


@dataclass(frozen=True)
class Probing:
    """What to probe and which comparisons to add (``configs/probing/``)."""

    layers: list[int] | None = None
    control: bool = False
    shuffled_control: bool = False
    mdl: bool = False
    mdl_fractions: list[float] | None = None


@dataclass
class ProbeEngine:
    """Everything a task needs to train probes, built once by ``run()`` from the config.

    ``probe``, ``datamodule`` and ``trainer`` are partially-applied constructors: each seed,
    control and MDL block gets a fresh probe, datamodule and trainer, and ``callbacks`` are
    constructors too, so no stopping state leaks from one fit into the next.
    """

    probe: Callable[..., pl.LightningModule]
    datamodule: Callable[..., CacheProbeDataModule]
    trainer: Callable[..., pl.Trainer]
    callbacks: list[Callable[[], pl.Callback]] = field(default_factory=list)
    loggers: list[Any] = field(default_factory=list)
    probing: Probing = field(default_factory=Probing)
    seed: int = 0
    seeds: list[int] | None = None  # several seeds over the same data (None: ``seed`` only)

    def train_view(self, view: FeatureView, name_prefix: str) -> list[dict[str, Any]]:
        """Rows for every probe of ``view``: task accuracy over seeds, controls, MDL."""
        return train_view(view, self, name_prefix)


def majority_chance(view: FeatureView) -> float:
    """Test accuracy of always answering the most frequent training label."""
    train = view.labels[view.rows(SPLIT_IDS["train"])]
    test = view.labels[view.rows(SPLIT_IDS["test"])]
    if train.size == 0 or test.size == 0:
        return float("nan")
    return float(np.mean(test == np.bincount(train).argmax()))


def make_datamodule(
    view: FeatureView,
    engine: ProbeEngine,
    rows: dict[str, np.ndarray] | None = None,
    batch_size: int | None = None,
) -> CacheProbeDataModule:
    """A datamodule over ``view``; ``batch_size`` overrides the loader's (MDL's small prefixes)."""
    extra = {"batch_size": batch_size} if batch_size else {}
    return engine.datamodule(view, seed=engine.seed, rows=rows, **extra)


def fit_probes(
    view: FeatureView,
    dm: CacheProbeDataModule,
    engine: ProbeEngine,
    loggers: list[Any],
    names: list[str],
    seed: int,
    test: bool = True,
    input_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    callbacks: list[pl.Callback] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> pl.LightningModule:
    """One fused MultiProbe for every probe of the view: fit, then test at each best epoch.

    MDL blocks replace the training rows' standardisation (``input_stats``: all training
    inputs), the configured callbacks and some trainer settings."""
    pl.seed_everything(seed, workers=True, verbose=False)
    x = dm.datasets["train"][0]["x"]
    model = engine.probe(
        num_probes=x.shape[0],
        in_dim=x.shape[1],
        num_classes=view.num_classes,
        probe_names=names,
        chance=majority_chance(view),
    )
    model.set_input_stats(*(input_stats or dm.input_stats()))
    if callbacks is None:
        callbacks = [make() for make in engine.callbacks]
    trainer = engine.trainer(logger=loggers or False, callbacks=callbacks, **(trainer_kwargs or {}))
    trainer.fit(model, datamodule=dm)
    if test:
        trainer.test(model, datamodule=dm, verbose=False)
    return model


def _seed_stats(values: list[list[float | None]]) -> dict[str, list]:
    """Per probe mean, std and 95% CI half-width over seeds (NaN-safe for missing values)."""
    arr = np.array([[np.nan if v is None else v for v in run] for run in values], float)
    mean, std, half = mean_std_ci(arr)
    return {"mean": mean.tolist(), "std": np.atleast_1d(std).tolist(), "ci": half.tolist()}


def _fit_seeds(
    view: FeatureView,
    dm: CacheProbeDataModule,
    engine: ProbeEngine,
    loggers: list[Any],
    prefix: str,
    seeds: list[int],
) -> list[list[dict[str, Any]]]:
    runs = []
    for seed in seeds:
        tag = f"{prefix}/seed{seed}" if len(seeds) > 1 else prefix
        names = [f"{tag}/{n}" for n in view.probe_names]
        model = fit_probes(view, dm, engine, loggers, names, seed)
        runs.append(model.results())
    return runs


def train_view(view: FeatureView, engine: ProbeEngine, name_prefix: str) -> list[dict[str, Any]]:
    """Rows for every probe of ``view``: task accuracy over seeds, controls, MDL."""
    seeds = [int(s) for s in (engine.seeds or [engine.seed])]
    loggers = engine.loggers
    dm = make_datamodule(view, engine)
    runs = _fit_seeds(view, dm, engine, loggers, name_prefix, seeds)
    sizes = {f"n_{s}": len(ds) for s, ds in dm.datasets.items()}
    rows = []
    for k, probe_name in enumerate(view.probe_names):
        first = runs[0][k]
        rows.append({**first, "probe": probe_name, "name": f"{name_prefix}/{probe_name}", **sizes})
    if len(seeds) > 1:
        for metric in SEED_METRICS:
            stats = _seed_stats([[r[metric] for r in run] for run in runs])
            for k, row in enumerate(rows):
                row[metric] = stats["mean"][k]
                row[f"{metric}_std"] = stats["std"][k]
                row[f"{metric}_ci95"] = stats["ci"][k]
                row[f"{metric}_per_seed"] = [run[k][metric] for run in runs]
        for row in rows:
            row["seeds"] = seeds
    add_test_interval(rows)
    probing = engine.probing
    if probing.control:
        _add_control(rows, engine, name_prefix, seeds, "control", _control_view(view))
    if probing.shuffled_control:
        shuffled = view.with_labels(_shuffled(view, engine.seed))
        _add_control(rows, engine, name_prefix, seeds, "shuffled", shuffled)
    if probing.mdl:
        _add_mdl(rows, view, engine, name_prefix)
    return rows


def add_test_interval(rows: list[dict[str, Any]]) -> None:
    """``test_acc_low`` / ``test_acc_high``: the Wilson 95% interval of each row's test
    accuracy over its ``n_test`` examples (the test set is a sample; seeds share it)."""
    for row in rows:
        acc = row.get("test_acc")
        low, high = wilson_interval(np.nan if acc is None else acc, row.get("n_test", 0))
        row["test_acc_low"], row["test_acc_high"] = float(low), float(high)


def _control_view(view: FeatureView) -> FeatureView:
    """Each type keeps one random label drawn from the task's label distribution."""
    if view.control_types is None:
        raise ValueError("this task defines no control types; run without probing.control")
    used = view.labels >= 0
    control = np.full_like(view.labels, -1)
    control[used] = control_labels(
        view.control_types[used], view.labels[used], view.num_classes, seed=0
    )
    return view.with_labels(control)


def _shuffled(view: FeatureView, seed: int) -> np.ndarray:
    used = view.labels >= 0
    out = view.labels.copy()
    out[used] = shuffled_labels(view.labels[used], seed=seed)
    return out


def _add_control(
    rows: list[dict[str, Any]],
    engine: ProbeEngine,
    name_prefix: str,
    seeds: list[int],
    kind: str,
    control: FeatureView,
) -> None:
    dm = make_datamodule(control, engine)
    runs = _fit_seeds(control, dm, engine, engine.loggers, f"{kind}/{name_prefix}", seeds)
    accs = _seed_stats([[r["test_acc"] for r in run] for run in runs])["mean"]
    if kind == "control":
        assert control.control_types is not None
        ceiling = lookup_ceiling(
            control.control_types,
            control.labels,
            control.row_split,
            SPLIT_IDS["train"],
            SPLIT_IDS["test"],
        )
        for row in rows:
            row["control_ceiling"] = ceiling["ceiling"]
            row["control_type_recurrence"] = ceiling["recurrence"]
    for row, acc in zip(rows, accs, strict=True):
        row[f"{kind}_test_acc"] = acc
        row["selectivity" if kind == "control" else "shuffled_gap"] = float(
            selectivity(np.float64(row["test_acc"] or np.nan), np.float64(acc))
        )


def _add_mdl(
    rows: list[dict[str, Any]], view: FeatureView, engine: ProbeEngine, name_prefix: str
) -> None:
    """Online code (Voita and Titov 2020) over the seeded training order: each block is coded
    by the probe trained on the rows before it, whose epoch and L2 strength (``MDL_C_GRID``)
    are chosen per probe by validation loss. Inputs are standardised with the statistics of
    all training inputs (labels are what is coded; the inputs are known to the receiver), not
    of a prefix of a few rows."""
    order, edges = online_blocks(
        view.rows(SPLIT_IDS["train"]), engine.seed, engine.probing.mdl_fractions
    )
    full = make_datamodule(view, engine, rows={"train": order})
    stats = full.input_stats()
    names = [f"mdl/{name_prefix}/{n}" for n in view.probe_names]
    block_bits, chosen = [], []
    for lo, hi in pairwise(edges):
        # at least MDL_MIN_BATCHES optimiser steps per epoch, however small the prefix
        batch = max(1, min(full.batch_size, lo // MDL_MIN_BATCHES))
        dm = make_datamodule(view, engine, {"train": order[:lo], "test": order[lo:hi]}, batch)
        best_val = torch.full((len(names),), math.inf, dtype=torch.float64)
        bits = torch.zeros(len(names), dtype=torch.float64)
        best_c = torch.zeros(len(names), dtype=torch.float64)
        for c in MDL_C_GRID:
            select = BestValLoss(l2_strength(c, lo))
            model = fit_probes(
                view, dm, engine, [], names, engine.seed, False, stats, [select], NO_VALIDATION
            )
            select.restore(model)
            better = select.best < best_val
            best_val[better] = select.best[better]
            bits[better] = nll_bits(model, dm.full_test_dataloader())[better]
            best_c[better] = c
        block_bits.append(bits.numpy())
        chosen.append(best_c.numpy())
    all_bits = np.stack(block_bits, axis=1) if block_bits else np.zeros((len(rows), 0))
    for k, (row, probe_bits) in enumerate(zip(rows, all_bits, strict=True)):
        code = online_codelength(edges, probe_bits.tolist(), edges[0], view.num_classes)
        row["mdl_codelength_bits"] = code["online_codelength"]
        row["mdl_uniform_bits"] = code["uniform_codelength"]
        row["mdl_compression"] = code["compression"]
        row["mdl_block_C"] = [float(c[k]) for c in chosen]


MDL_MIN_BATCHES = 10  # optimiser steps per epoch of an MDL block fit (a fit must converge)
NO_VALIDATION = {"limit_val_batches": 0}  # BestValLoss measures the validation loss itself


@torch.no_grad()
def nll_bits(model: pl.LightningModule, batches: Any) -> torch.Tensor:
    """(P,) summed ``-log2 p(y | x)`` of every probe with its current parameters."""
    was_training = model.training
    model.eval()
    total = None
    for batch in batches:
        logp = torch.log_softmax(model(batch["x"].to(model.device)).double(), dim=-1)
        y = batch["y"].to(model.device)
        picked = logp.gather(2, y[:, None, None].expand(-1, logp.shape[1], 1)).squeeze(2)
        part = -picked.sum(0) / math.log(2)
        total = part if total is None else total + part
    model.train(was_training)
    return total.cpu() if total is not None else torch.zeros(0, dtype=torch.float64)


class BestValLoss(pl.Callback):
    """MDL block fits: an L2 penalty ``l2 / 2 ||W||^2`` on the probes' weights (added to the
    gradients; biases free), and per probe the parameters of the epoch with the lowest
    validation loss, the untrained start included (a few rows may teach nothing). Measured
    after every training epoch (the fit runs without Lightning's own validation loop); stops
    once no probe has improved for ``patience`` epochs."""

    def __init__(self, l2: float, patience: int = 6) -> None:
        self.l2, self.patience = l2, patience
        self.best = torch.empty(0)
        self.saved: list[torch.Tensor] = []
        self.wait = 0

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name, param in pl_module.probes.named_parameters():
            if "bias" not in name and param.grad is not None:
                param.grad.add_(param.detach(), alpha=self.l2)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.best = torch.full((len(pl_module.probe_names),), math.inf, dtype=torch.float64)
        self.saved = [p.detach().clone() for p in pl_module.parameters()]
        self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._check(trainer, pl_module):
            self.wait = 0
        else:
            self.wait += 1
            trainer.should_stop = trainer.should_stop or self.wait >= self.patience

    @torch.no_grad()
    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """Snapshot the probes whose validation loss improved; whether any did."""
        loss = nll_bits(pl_module, trainer.datamodule.val_dataloader())
        better = loss < self.best * (1 - 1e-4)
        self.best[better] = loss[better]
        for saved, param in zip(self.saved, pl_module.parameters(), strict=True):
            saved[better] = param.detach()[better]
        return bool(better.any())

    @torch.no_grad()
    def restore(self, pl_module: pl.LightningModule) -> None:
        for saved, param in zip(self.saved, pl_module.parameters(), strict=True):
            param.copy_(saved)
