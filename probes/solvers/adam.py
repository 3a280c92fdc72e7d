"""Probes of any family trained with Adam in Lightning, streaming or from memory.

Probe ``k`` starts from weights seeded by (seed, its name), batches come in the seed's order
and plateau stopping is per probe, so a probe's result does not depend on the probes beside
it. Every probe x label set of the seed (task, control, its shuffle) x combination of
``probing.select`` (linear probes: x L2 penalty) is a slot with its own labels, init,
penalty, decay, dropout and plateau stopping: one ``MultiProbe`` per parameter shape, all
shapes fed by the same batches in one training loop (``ProbeGroup``). Each slot is tested at
its own best validation epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from datamodules.cache_datamodule import CacheProbeDataModule
from datamodules.views import FeatureView
from probes.multi_probe import ProbeGroup
from probes.plan import SLOT_KEYS, Plan, group_by_shape, majority_chance
from probes.settings import Settings
from probes.solvers.base import Candidates, Solved


@dataclass
class Fit:
    """One fused fit: its probes' names and seed, and what differs from the run's defaults."""

    names: list[str]
    seed: int
    init_names: list[str] | None = None  # weights seeded by (seed, init name); default: name
    probe_kwargs: Mapping[str, Any] | None = None  # e.g. slots over the view's columns
    input_stats: tuple[torch.Tensor, torch.Tensor] | None = None  # default: training rows'
    loggers: list[Any] | None = None
    test: bool = True  # test each probe at its best epoch after fitting
    callbacks: list[pl.Callback] | None = None  # default: the configured ones
    trainer_kwargs: dict[str, Any] | None = None


def make_datamodule(
    view: FeatureView,
    settings: Settings,
    rows: dict[str, np.ndarray] | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    label_sets: np.ndarray | None = None,
) -> CacheProbeDataModule:
    """Batches in the order of ``seed`` (default: the run's seed); ``batch_size`` overrides the
    loader's (MDL's small prefixes); ``label_sets`` (``(N, L)``) rides with every batch."""
    extra: dict[str, Any] = {"batch_size": batch_size} if batch_size else {}
    if label_sets is not None:
        extra["label_sets"] = label_sets
    seed = settings.seed if seed is None else seed
    return settings.datamodule(view, seed=seed, rows=rows, **extra)


def build_probe(
    view: FeatureView, dm: CacheProbeDataModule, settings: Settings, fit: Fit
) -> pl.LightningModule:
    """The configured probe module over ``fit.names``, standardised with the training rows'
    statistics (or ``fit.input_stats``)."""
    x = dm.datasets["train"][0]["x"]
    model = settings.probe(
        num_probes=len(fit.names),
        in_dim=x.shape[1],
        num_classes=view.num_classes,
        probe_names=fit.names,
        chance=majority_chance(view),
        seed=fit.seed,
        init_names=fit.init_names,
        **(fit.probe_kwargs or {}),
    )
    model.set_input_stats(*(fit.input_stats or dm.input_stats()))
    return model


def fit_model(
    model: pl.LightningModule, dm: CacheProbeDataModule, settings: Settings, fit: Fit
) -> pl.LightningModule:
    """Fit (batches in the datamodule's seeded order), then test each probe at its best epoch."""
    pl.seed_everything(fit.seed, workers=True, verbose=False)
    callbacks = fit.callbacks
    if callbacks is None:
        callbacks = [make() for make in settings.callbacks]
    trainer = settings.trainer(
        logger=fit.loggers or False, callbacks=callbacks, **(fit.trainer_kwargs or {})
    )
    trainer.fit(model, datamodule=dm)
    if fit.test:
        trainer.test(model, datamodule=dm, verbose=False)
    return model


def fit_probes(
    view: FeatureView, dm: CacheProbeDataModule, settings: Settings, fit: Fit
) -> pl.LightningModule:
    """One fused MultiProbe for every probe of ``fit``: fit, then test at each best epoch."""
    return fit_model(build_probe(view, dm, settings, fit), dm, settings, fit)


def solve_adam(view: FeatureView, plan: Plan, settings: Settings) -> Solved:
    """One training loop per seed, batches in the seed's order, so a seed's results equal its
    separate run; per (label set, seed) the candidates are ``plan.combos`` in order."""
    solved = Solved([])
    for seed in plan.seeds:
        seed_sets = plan.sets_of(seed)
        dm = make_datamodule(
            view, settings, seed=seed, label_sets=np.stack([ls.labels for ls in seed_sets], 1)
        )
        members, member_slots = [], []
        for shape, group in group_by_shape(plan.combos):
            slots = [
                (j, c, k)
                for j in range(len(seed_sets))
                for c in group
                for k in range(len(view.probe_names))
            ]
            fit = _slot_fit(view, plan, seed, seed_sets, slots)
            per_slot = {
                key: [plan.combos[c][key] for _, c, _ in slots]
                for key in SLOT_KEYS
                if key in plan.combos[0]
            }
            fit.probe_kwargs = {
                **shape,
                **per_slot,
                "slot_inputs": [k for _, _, k in slots],
                "label_columns": [j for j, _, _ in slots],
            }
            members.append(build_probe(view, dm, settings, fit))
            member_slots += slots
        # shapes differ: one module each, all fed by the same batches in one training loop
        model = members[0] if len(members) == 1 else ProbeGroup(members)
        fit_model(model, dm, settings, Fit(model.probe_names, seed, loggers=settings.loggers))
        found: dict[tuple[int, int], list[dict[str, Any]]] = {}  # (label set, combo) -> rows
        for (j, c, _), row in zip(member_slots, model.results(), strict=True):
            found.setdefault((j, c), []).append({**row, **plan.combos[c], "solver": "sgd"})
        for j, labels in enumerate(seed_sets):
            rows = [found[j, c] for c in range(len(plan.combos))]
            solved.groups.append(Candidates(labels, seed, rows))
    return solved


def _slot_fit(
    view: FeatureView, plan: Plan, seed: int, seed_sets: list, slots: list[tuple[int, int, int]]
) -> Fit:
    """The names of slots (label set, combination, probe): ``<labels>[/seed<s>][/key=v]/<probe>``,
    each initialised from (seed, ``<labels>/<probe>``) as its probe alone would be."""
    names, init_names = [], []
    for j, c, k in slots:
        base = seed_sets[j].prefix(plan.prefix)
        suffix = "".join(f"/{key}={v}" for key, v in plan.combos[c].items())
        names.append(f"{plan.tag(base, seed)}{suffix}/{view.probe_names[k]}")
        init_names.append(f"{base}/{view.probe_names[k]}")
    return Fit(names, seed, init_names)
