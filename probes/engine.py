"""Train fused MultiProbes over a feature view: seeds, controls and MDL, one row per probe.

Data are loaded (or opened) once per view; every seed, the control task and each MDL block
reuse them. Rows carry the mean over seeds with standard deviation and 95% confidence
half-width, the control accuracy and selectivity, and the MDL code length when asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl

from datamodules.cache_datamodule import CacheProbeDataModule
from datamodules.views import FeatureView
from vlprobe.analysis.controls import control_labels, selectivity, shuffled_labels
from vlprobe.analysis.mdl import block_edges, online_codelength
from vlprobe.analysis.stats import mean_std_ci
from vlprobe.cache.schema import SPLIT_IDS


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
    view: FeatureView, engine: ProbeEngine, rows: dict[str, np.ndarray] | None = None
) -> CacheProbeDataModule:
    return engine.datamodule(view, seed=engine.seed, rows=rows)


def fit_probes(
    view: FeatureView,
    dm: CacheProbeDataModule,
    engine: ProbeEngine,
    loggers: list[Any],
    names: list[str],
    seed: int,
    test: bool = True,
) -> pl.LightningModule:
    """One fused MultiProbe for every probe of the view: fit, then test at each best epoch."""
    pl.seed_everything(seed, workers=True, verbose=False)
    x = dm.datasets["train"][0]["x"]
    model = engine.probe(
        num_probes=x.shape[0],
        in_dim=x.shape[1],
        num_classes=view.num_classes,
        probe_names=names,
        chance=majority_chance(view),
    )
    model.set_input_stats(*dm.input_stats())
    callbacks = [make() for make in engine.callbacks]
    trainer = engine.trainer(logger=loggers or False, callbacks=callbacks)
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
        for metric in ("test_acc", "val_acc", "test_f1"):
            stats = _seed_stats([[r[metric] for r in run] for run in runs])
            for k, row in enumerate(rows):
                row[metric] = stats["mean"][k]
                row[f"{metric}_std"] = stats["std"][k]
                row[f"{metric}_ci95"] = stats["ci"][k]
                row[f"{metric}_per_seed"] = [run[k][metric] for run in runs]
        for row in rows:
            row["seeds"] = seeds
    probing = engine.probing
    if probing.control:
        _add_control(rows, engine, name_prefix, seeds, "control", _control_view(view))
    if probing.shuffled_control:
        shuffled = view.with_labels(_shuffled(view, engine.seed))
        _add_control(rows, engine, name_prefix, seeds, "shuffled", shuffled)
    if probing.mdl:
        _add_mdl(rows, view, engine, name_prefix)
    return rows


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
    for row, acc in zip(rows, accs, strict=True):
        row[f"{kind}_test_acc"] = acc
        row["selectivity" if kind == "control" else "shuffled_gap"] = float(
            selectivity(np.float64(row["test_acc"] or np.nan), np.float64(acc))
        )


def _add_mdl(
    rows: list[dict[str, Any]], view: FeatureView, engine: ProbeEngine, name_prefix: str
) -> None:
    """Online code: train on each prefix of the (shuffled) training rows, code the next block."""
    train = view.rows(SPLIT_IDS["train"])
    order = np.random.default_rng(engine.seed).permutation(train)
    fractions = engine.probing.mdl_fractions or None
    edges = block_edges(len(order), fractions) if fractions else block_edges(len(order))
    block_bits = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        rows_for = {"train": order[:lo], "test": order[lo:hi]}
        dm = make_datamodule(view, engine, rows=rows_for)
        names = [f"mdl/{name_prefix}/{n}" for n in view.probe_names]
        model = fit_probes(view, dm, engine, [], names, engine.seed, False)
        block_bits.append(model.codelength_bits(dm.test_dataloader()).numpy())
    bits = np.stack(block_bits, axis=1) if block_bits else np.zeros((len(rows), 0))
    for row, probe_bits in zip(rows, bits, strict=True):
        code = online_codelength(edges, probe_bits.tolist(), edges[0], view.num_classes)
        row["mdl_codelength_bits"] = code["online_codelength"]
        row["mdl_uniform_bits"] = code["uniform_codelength"]
        row["mdl_compression"] = code["compression"]
