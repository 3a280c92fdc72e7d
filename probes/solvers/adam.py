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
from functools import partial
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from datamodules.cache_datamodule import CacheProbeDataModule
from datamodules.views import FeatureView
from probes.multi_probe import MultiProbe, ProbeGroup
from probes.plan import SLOT_KEYS, Plan, group_by_shape, majority_chance
from probes.settings import Settings
from probes.solvers.base import Candidates, Solved, TestedProbe


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
    seeds: list[int] | None = None,
) -> CacheProbeDataModule:
    """Batches in the order of ``seed`` (default: the run's seed), or one batch per seed of
    ``seeds`` each step; ``batch_size`` overrides the loader's (MDL's small prefixes);
    ``label_sets`` (``(N, L)``) rides with every batch."""
    extra: dict[str, Any] = {"batch_size": batch_size} if batch_size else {}
    if label_sets is not None:
        extra["label_sets"] = label_sets
    if seeds is not None:
        extra["seeds"] = seeds
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
    """Every seed in one training loop: a seed's slots read the batches of its own order
    (``CacheProbeDataModule(seeds=...)``) and start from weights seeded by it, and slots that
    stopped take no work, so each seed's results equal its separate run at about the cost of
    its running slots. Per (label set, seed) the candidates are ``plan.combos`` in order."""
    columns = np.stack([ls.labels for ls in plan.sets], 1)  # every label set of every seed
    several = len(plan.seeds) > 1
    dm = make_datamodule(
        view,
        settings,
        seed=plan.seeds[0],
        label_sets=columns,
        seeds=plan.seeds if several else None,
    )
    members, member_slots, batch_of = [], [], []
    for i, seed in enumerate(plan.seeds):
        for shape, group in group_by_shape(plan.combos):
            slots = [
                (j, c, k)
                for j in plan.sets_of(seed)
                for c in group
                for k in range(len(view.probe_names))
            ]
            fit = _slot_fit(view, plan, seed, slots)
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
            member_slots.append([(seed, j, c, k) for j, c, k in slots])
            batch_of.append(i)
    # shapes and seeds differ: one module each, all fed in one training loop
    model = members[0] if len(members) == 1 else ProbeGroup(members, batch_of if several else None)
    fit_model(model, dm, settings, Fit(model.probe_names, plan.seeds[0], loggers=settings.loggers))
    found: dict[tuple[int, int, int], list[dict[str, Any]]] = {}  # (seed, set, combo) -> rows
    slots = [slot for member in member_slots for slot in member]
    for (seed, j, c, _), row in zip(slots, model.results(), strict=True):
        found.setdefault((seed, j, c), []).append({**row, **plan.combos[c], "solver": "sgd"})
    solved = Solved([])
    for seed in plan.seeds:
        for j in plan.sets_of(seed):
            rows = [found[seed, j, c] for c in range(len(plan.combos))]
            solved.groups.append(Candidates(plan.sets[j], seed, rows))
    if settings.probing.save_weights:
        first = plan.sets_of(plan.seeds[0])[0]  # the label set of solved.groups[0]
        solved.tested = partial(tested_probe, members, member_slots, (plan.seeds[0], first))
    return solved


def tested_probe(
    members: list[MultiProbe],
    member_slots: list[list[tuple[int, int, int, int]]],
    where: tuple[int, int],
    k: int,
    c: int,
) -> TestedProbe:
    """Probe ``k``'s slot under combination ``c`` for (seed, label set) ``where``, as tested."""
    member, i = next(
        (member, i)
        for member, slots in zip(members, member_slots, strict=True)
        for i, slot in enumerate(slots)
        if slot == (*where, c, k)
    )
    return TestedProbe(
        family=member.probes.name,
        apply=member.probes.apply_note(),
        state=member.tested_state(i),
        mean=member.input_mean[i].cpu().clone(),
        std=member.input_std[i].cpu().clone(),
    )


def _slot_fit(view: FeatureView, plan: Plan, seed: int, slots: list[tuple[int, int, int]]) -> Fit:
    """The names of slots (label set, combination, probe): ``<labels>[/seed<s>][/key=v]/<probe>``,
    each initialised from (seed, ``<labels>/<probe>``) as its probe alone would be."""
    names, init_names = [], []
    for j, c, k in slots:
        base = plan.sets[j].prefix(plan.prefix)
        suffix = "".join(f"/{key}={v}" for key, v in plan.combos[c].items())
        names.append(f"{plan.tag(base, seed)}{suffix}/{view.probe_names[k]}")
        init_names.append(f"{base}/{view.probe_names[k]}")
    return Fit(names, seed, init_names)
