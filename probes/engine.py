"""Train probes over a feature view: seeds, controls, penalties and MDL, one row per probe.

Two solvers, same rows. Linear probes whose features fit the loader's memory budget are
solved to the optimum by batched full-batch L-BFGS (``probes.full_batch``): every seed,
label set (task, control, shuffled control) and L2 penalty of the grid is a slot of the
probe axis, all sharing one read of the data, and each probe keeps the penalty with the best
validation accuracy, as scikit-learn's C search and SentEval do. Other families (and views
that do not fit) train with Adam in Lightning, streaming or from memory: probe ``k`` starts
from weights seeded by (seed, its name), batches come in the seed's order, and plateau
stopping is per probe, so a probe's result does not depend on the probes beside it; there
label sets, the L2 grid (linear probes) and ``probing.select`` ride the probe axis of one
training loop per seed.

Rows also carry the Wilson 95% interval of the test accuracy over the test examples, and
with ``probing.control`` the ceiling of the control task (a type -> label lookup).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import get_class

from datamodules.cache_datamodule import CacheProbeDataModule
from datamodules.views import FeatureView
from probes.families import LinearProbe
from probes.full_batch import LBFGSSettings, Slot, SlotMetrics, fit_view, free_logits, view_dim
from probes.mdl import add_mdl
from probes.multi_probe import ProbeGroup
from vlprobe.analysis.controls import (
    control_labels,
    lookup_ceiling,
    selectivity,
    shuffled_labels,
)
from vlprobe.analysis.stats import mean_std_ci, wilson_interval
from vlprobe.cache.schema import SPLIT_IDS
from vlprobe.console import progress

log = logging.getLogger(__name__)

# row columns averaged over seeds (each probe's best epoch and val F1 too, not the first seed's)
SEED_METRICS = ("test_acc", "val_acc", "test_f1", "val_f1", "best_epoch")
SOLVERS = ("auto", "lbfgs", "sgd")
#: SentEval's l2reg grid (its classifier's Adam weight decay = our per-example L2 penalty)
#: and four decades stronger: on the 20k-pair bench the best penalty sat at 0.1-10, on the
#: demo at the old top, 0.1. In scikit-learn's terms (C = 1 / (l2 n_train)) the top reaches
#: LogisticRegressionCV's strongest C, 1e-4, for n_train >= 100. Strong penalties converge in
#: a few iterations and leave the working set (``full_batch.lbfgs``): no extra passes.
DEFAULT_L2 = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass(frozen=True)
class Probing:
    """What to probe, how linear probes are solved, and which comparisons to add
    (``configs/probing/``)."""

    layers: list[int] | None = None
    control: bool = False
    shuffled_control: bool = False
    mdl: bool = False
    mdl_fractions: list[float] | None = None
    # auto: full-batch L-BFGS for linear probes whose features fit the memory budget
    solver: str = "auto"
    l2_grid: Sequence[float] = DEFAULT_L2
    max_iter: int = 500
    # probe arguments to select on validation per probe (Adam path), e.g.
    # {hidden_dim: [64, 256], dropout: [0.0, 0.3], weight_decay: [0.0, 0.01]}: every
    # combination is trained in one loop per seed; each probe keeps its best
    select: Mapping[str, Sequence[Any]] | None = None

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"probing.solver must be one of {', '.join(SOLVERS)}: {self.solver!r}")
        if not self.l2_grid or min(self.l2_grid) < 0:
            raise ValueError(f"probing.l2_grid needs penalties >= 0, got {self.l2_grid}")


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
        detail = f"{len(view.probe_names)} probes, {self.solver_for(view)}, "
        detail += f"{view.rows(SPLIT_IDS['train']).size} training rows"
        with progress(f"probing {name_prefix}", detail):
            return train_view(view, self, name_prefix)

    def seed_list(self) -> list[int]:
        return [int(s) for s in (self.seeds or [self.seed])]

    def solver_for(self, view: FeatureView) -> str:
        """``lbfgs`` or ``sgd`` for this view (``auto``: L-BFGS for linear probes whose float32
        features, all splits, fit ``loader.memory_budget_mb`` one probe at a time)."""
        solver = self.probing.solver
        linear = self.linear()
        if solver == "lbfgs" and not linear:
            raise ValueError("probing.solver=lbfgs solves linear probes only: use probe=linear")
        if solver != "auto":
            return solver
        rows = sum(view.rows(i).size for i in SPLIT_IDS.values())
        return "lbfgs" if linear and rows * view_dim(view) * 4 <= self.memory_budget() else "sgd"

    def linear(self) -> bool:
        """Whether the configured probes are linear (``probes.families.LinearProbe``)."""
        family = getattr(self.probe, "keywords", {}).get("family", LinearProbe)
        family = get_class(family) if isinstance(family, str) else family
        return isinstance(family, type) and issubclass(family, LinearProbe)

    def memory_budget(self) -> float:
        return float(getattr(self.datamodule, "keywords", {}).get("memory_budget_mb", 2048)) * 2**20

    def device(self) -> torch.device:
        """The full-batch solver's device: the trainer's accelerator (a GPU when it has one)."""
        accelerator = getattr(self.trainer, "keywords", {}).get("accelerator", "auto")
        if accelerator != "cpu" and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")


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
    seed: int | None = None,
    label_sets: np.ndarray | None = None,
) -> CacheProbeDataModule:
    """Batches in the order of ``seed`` (default: the run's seed); ``batch_size`` overrides the
    loader's (MDL's small prefixes); ``label_sets`` (``(N, L)``) rides with every batch."""
    extra: dict[str, Any] = {"batch_size": batch_size} if batch_size else {}
    if label_sets is not None:
        extra["label_sets"] = label_sets
    return engine.datamodule(view, seed=engine.seed if seed is None else seed, rows=rows, **extra)


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
    init_names: list[str] | None = None,
    probe_kwargs: Mapping[str, Any] | None = None,
) -> pl.LightningModule:
    """One fused MultiProbe for every probe of the view: fit, then test at each best epoch.

    MDL blocks replace the training rows' standardisation (``input_stats``: all training
    inputs), the configured callbacks and some trainer settings."""
    model = build_probe(view, dm, engine, names, seed, init_names, probe_kwargs, input_stats)
    return fit_model(model, dm, engine, loggers, seed, test, callbacks, trainer_kwargs)


def build_probe(
    view: FeatureView,
    dm: CacheProbeDataModule,
    engine: ProbeEngine,
    names: list[str],
    seed: int,
    init_names: list[str] | None = None,
    probe_kwargs: Mapping[str, Any] | None = None,
    input_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> pl.LightningModule:
    """The configured probe module over ``names``, standardised with the training rows'
    statistics. Probe ``k`` starts from weights seeded by (``seed``, ``init_names[k]``;
    default its name); ``probe_kwargs`` may make probes slots over the view's columns."""
    x = dm.datasets["train"][0]["x"]
    model = engine.probe(
        num_probes=len(names),
        in_dim=x.shape[1],
        num_classes=view.num_classes,
        probe_names=names,
        chance=majority_chance(view),
        seed=seed,
        init_names=init_names,
        **(probe_kwargs or {}),
    )
    model.set_input_stats(*(input_stats or dm.input_stats()))
    return model


def fit_model(
    model: pl.LightningModule,
    dm: CacheProbeDataModule,
    engine: ProbeEngine,
    loggers: list[Any],
    seed: int,
    test: bool = True,
    callbacks: list[pl.Callback] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> pl.LightningModule:
    """Fit (batches in the datamodule's seeded order), then test each probe at its best epoch."""
    pl.seed_everything(seed, workers=True, verbose=False)
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


@dataclass(frozen=True)
class LabelSet:
    """Labels a probe is trained on: the task's, the control task's or a shuffle (per seed)."""

    kind: str  # task | control | shuffled
    labels: np.ndarray
    seed: int | None = None  # shuffles depend on the seed; task and control labels do not

    def prefix(self, name_prefix: str) -> str:
        return name_prefix if self.kind == "task" else f"{self.kind}/{name_prefix}"


def label_sets(view: FeatureView, probing: Probing, seeds: list[int]) -> list[LabelSet]:
    sets = [LabelSet("task", view.labels)]
    if probing.control:
        sets.append(LabelSet("control", _control_labels(view)))
    if probing.shuffled_control:
        sets += [LabelSet("shuffled", _shuffled(view, seed), seed) for seed in seeds]
    return sets


#: per label kind, per seed, one result dict per probe
Runs = dict[str, list[list[dict[str, Any]]]]


def train_view(view: FeatureView, engine: ProbeEngine, name_prefix: str) -> list[dict[str, Any]]:
    """Rows for every probe of ``view``: task accuracy over seeds, controls, MDL."""
    seeds = engine.seed_list()
    sets = label_sets(view, engine.probing, seeds)
    if engine.solver_for(view) == "lbfgs":
        runs = _solve_full_batch(view, engine, name_prefix, seeds, sets)
    else:
        runs = _fit_sgd(view, engine, name_prefix, seeds, sets)
    sizes = {f"n_{s}": int(view.rows(i).size) for s, i in SPLIT_IDS.items()}
    rows = []
    for k, probe_name in enumerate(view.probe_names):
        first = runs["task"][0][k]
        rows.append({**first, "probe": probe_name, "name": f"{name_prefix}/{probe_name}", **sizes})
    if len(seeds) > 1:
        for metric in SEED_METRICS:
            values = [[r[metric] for r in run] for run in runs["task"]]
            if all(v is None for run in values for v in run):
                continue  # e.g. best_epoch of the full-batch solver, which has no epochs
            stats = _seed_stats(values)
            for k, row in enumerate(rows):
                row[metric] = stats["mean"][k]
                row[f"{metric}_std"] = stats["std"][k]
                row[f"{metric}_ci95"] = stats["ci"][k]
                row[f"{metric}_per_seed"] = [run[k][metric] for run in runs["task"]]
        for k, row in enumerate(rows):
            row["seeds"] = seeds
            if "l2" in row:
                row["l2_per_seed"] = [run[k]["l2"] for run in runs["task"]]
    for kind, gap in (("control", "selectivity"), ("shuffled", "shuffled_gap")):
        if kind not in runs:
            continue
        accs = _seed_stats([[r["test_acc"] for r in run] for run in runs[kind]])["mean"]
        for k, (row, acc) in enumerate(zip(rows, accs, strict=True)):
            row[f"{kind}_test_acc"] = acc
            if "l2" in row:
                row[f"{kind}_l2"] = runs[kind][0][k]["l2"]
            row[gap] = float(selectivity(np.float64(row["test_acc"] or np.nan), np.float64(acc)))
    add_test_interval(rows)
    if "control" in runs:
        _add_control_ceiling(rows, view, next(s.labels for s in sets if s.kind == "control"))
    if engine.probing.mdl:
        add_mdl(rows, view, engine, name_prefix)
    return rows


def add_test_interval(rows: list[dict[str, Any]]) -> None:
    """``test_acc_low`` / ``test_acc_high``: the Wilson 95% interval of each row's test
    accuracy over its ``n_test`` examples (the test set is a sample; seeds share it)."""
    for row in rows:
        acc = row.get("test_acc")
        low, high = wilson_interval(np.nan if acc is None else acc, row.get("n_test", 0))
        row["test_acc_low"], row["test_acc_high"] = float(low), float(high)


#: probe arguments that change how a slot trains, not the shape of its parameters: they ride
#: the slot axis of one module; the others (width, depth, rank, lr) get a module of their own
SLOT_KEYS = ("dropout", "weight_decay", "l2")


def _fit_sgd(
    view: FeatureView, engine: ProbeEngine, prefix: str, seeds: list[int], sets: list[LabelSet]
) -> Runs:
    """Adam in Lightning, one pass over the data per seed, batches in the seed's order.

    Every probe x label set of the seed (task, control, its shuffle) x combination of
    ``probing.select`` (linear probes: x L2 penalty of ``probing.l2_grid``) is a slot, with
    its own labels, (seed, name) init, penalty, decay, dropout and plateau stopping: one
    MultiProbe per parameter shape, all shapes fed by the same batches in one training loop
    (``ProbeGroup``). Seeds do not share a pass: each seed's batch order is its own, so a
    seed's results equal its separate run. Per label set each probe keeps the combination
    with the best validation accuracy (ties: the first; penalties go from strong to weak)."""
    combos = _combinations(engine)
    runs: Runs = {}
    for seed in seeds:
        seed_sets = [ls for ls in sets if ls.seed in (None, seed)]
        dm = make_datamodule(
            view, engine, seed=seed, label_sets=np.stack([ls.labels for ls in seed_sets], 1)
        )
        members, member_slots = [], []
        for shape, group in _group_by_shape(combos):
            slots = [
                (j, c, k)
                for j in range(len(seed_sets))
                for c in group
                for k in range(len(view.probe_names))
            ]
            names, init_names = [], []
            for j, c, k in slots:
                base = seed_sets[j].prefix(prefix)
                tag = f"{base}/seed{seed}" if len(seeds) > 1 else base
                suffix = "".join(f"/{key}={v}" for key, v in combos[c].items())
                names.append(f"{tag}{suffix}/{view.probe_names[k]}")
                init_names.append(f"{base}/{view.probe_names[k]}")
            per_slot = {
                key: [combos[c][key] for _, c, _ in slots] for key in SLOT_KEYS if key in combos[0]
            }
            kwargs = {
                **shape,
                **per_slot,
                "slot_inputs": [k for _, _, k in slots],
                "label_columns": [j for j, _, _ in slots],
            }
            members.append(build_probe(view, dm, engine, names, seed, init_names, kwargs))
            member_slots += slots
        # shapes differ: one module each, all fed by the same batches in one training loop
        model = members[0] if len(members) == 1 else ProbeGroup(members)
        fit_model(model, dm, engine, engine.loggers, seed)
        found: dict[tuple[int, int], list[dict[str, Any]]] = {}  # (label set, combo) -> rows
        for (j, c, _), row in zip(member_slots, model.results(), strict=True):
            found.setdefault((j, c), []).append({**row, **combos[c], "solver": "sgd"})
        for j, labels in enumerate(seed_sets):
            chance = majority_chance(view.with_labels(labels.labels))
            best = [
                max((found[j, c][k] for c in range(len(combos))), key=_val_acc)
                for k in range(len(view.probe_names))
            ]
            runs.setdefault(labels.kind, []).append([{**row, "chance": chance} for row in best])
    return runs


def _val_acc(row: dict[str, Any]) -> float:
    return row["val_acc"] or 0.0


def _combinations(engine: ProbeEngine) -> list[dict[str, Any]]:
    """Every combination of ``probing.select``; linear probes also try every penalty of
    ``probing.l2_grid`` (strongest first), unless ``l2`` is selected explicitly."""
    select = {key: list(values) for key, values in (engine.probing.select or {}).items()}
    if engine.linear() and "l2" not in select:
        select["l2"] = sorted((float(v) for v in engine.probing.l2_grid), reverse=True)
    return [
        dict(zip(select, values, strict=True)) for values in itertools.product(*select.values())
    ]


def _group_by_shape(
    combos: list[dict[str, Any]],
) -> list[tuple[dict[str, Any], list[int]]]:
    """Combinations that build parameters of one shape (they differ in ``SLOT_KEYS`` only),
    in order of first appearance: (the shape's probe arguments, combination indices)."""
    groups: dict[tuple, tuple[dict[str, Any], list[int]]] = {}
    for c, combo in enumerate(combos):
        shape = {key: v for key, v in combo.items() if key not in SLOT_KEYS}
        groups.setdefault(tuple(shape.items()), (shape, []))[1].append(c)
    return list(groups.values())


def _solve_full_batch(
    view: FeatureView, engine: ProbeEngine, prefix: str, seeds: list[int], sets: list[LabelSet]
) -> Runs:
    """Every (label set, penalty) of every probe in one batched L-BFGS over the data; per
    (label set, seed) each probe keeps the penalty with the best validation accuracy (ties:
    the larger penalty, the simpler model).

    The objective is convex and every slot starts at zero, as scikit-learn does, so
    the seed changes nothing but the shuffled control's labels: labels that do not depend on
    the seed (task, control) are solved once and shared by every seed (their spread over
    seeds is zero, ``seed_invariant`` in the rows)."""
    grid = sorted(float(v) for v in engine.probing.l2_grid)
    groups = []  # (label set, seed, slot indices)
    slots: list[Slot] = []
    for i, labels in enumerate(sets):
        first = len(slots)
        slots += [Slot(i, None, labels.prefix(prefix), l2) for l2 in grid]
        for seed in seeds if labels.seed is None else [labels.seed]:
            groups.append((labels, seed, list(range(first, len(slots)))))
    metrics = fit_view(
        view,
        [s.labels for s in sets],
        slots,
        LBFGSSettings(max_iter=engine.probing.max_iter),
        engine.memory_budget(),
        engine.device(),
    )
    num_params = (view_dim(view) + 1) * free_logits(view.num_classes)
    runs: Runs = {}
    logged: dict[str, float] = {}
    for labels, seed, idx in groups:
        chance = majority_chance(view.with_labels(labels.labels))
        results = []
        for k, name in enumerate(view.probe_names):
            val = metrics.val_acc[k, idx]
            # the last maximum over increasing penalties: ties go to the larger penalty
            pick = idx[len(idx) - 1 - int(np.argmax(val[::-1]))]
            results.append(_slot_row(metrics, k, pick, slots[pick], chance, num_params))
            results[-1]["name"] = f"{labels.prefix(prefix)}/{name}"
            results[-1]["l2_at_edge"] = _at_edge(val, idx.index(pick))
            tag = f"{labels.prefix(prefix)}/seed{seed}" if len(seeds) > 1 else labels.prefix(prefix)
            for metric in ("val_acc", "test_acc"):
                split, what = metric.split("_")
                logged[f"{split}/{what}/{tag}/{name}"] = results[-1][metric] or float("nan")
            logged[f"train/loss/{tag}/{name}"] = float(metrics.train_loss[k, pick])
            logged[f"l2/{tag}/{name}"] = slots[pick].l2
        runs.setdefault(labels.kind, []).append(results)
    edge = [r["name"] for r in runs["task"][0] if r["l2_at_edge"]]
    if edge:
        log.warning(
            "%d of %d probes chose an L2 penalty at the edge of probing.l2_grid %s (%s): the "
            "optimum may lie outside it; widen the grid",
            len(edge),
            len(runs["task"][0]),
            grid,
            ", ".join(edge[:3]) + (", ..." if len(edge) > 3 else ""),
        )
    losses = [v for key, v in logged.items() if key.startswith("train/loss/")]
    logged["train/loss"] = float(np.sum(losses))  # as the Adam path: summed over probes
    for lg in engine.loggers:  # per-probe values reach W&B as tables (wandb_publish)
        lg.log_metrics({"train/loss": logged["train/loss"]}, step=0)
    _log_penalty_path(engine.loggers, view, prefix, sets, slots, metrics)
    return runs


def _at_edge(val: np.ndarray, j: int) -> bool:
    """Whether choice ``j`` along the grid's validation accuracies ``val`` may have an optimum
    beyond the grid: the first penalty (then the only maximum), or the last one strictly
    above its neighbour (a flat curve, e.g. a probe without signal, is not flagged)."""
    last = len(val) - 1
    return last > 0 and (j == 0 or (j == last and bool(val[last] > val[last - 1])))


def _log_penalty_path(
    loggers: list[Any],
    view: FeatureView,
    prefix: str,
    sets: list[LabelSet],
    slots: list[Slot],
    metrics: SlotMetrics,
) -> None:
    """What the penalty search saw, for W&B: one table of every slot and a line chart of
    validation accuracy over log10 of the penalty per probe (task labels); two keys per
    probed input, however many probes (no per-probe history keys)."""
    paths = []  # (row prefix, slot indices in increasing penalty) per solved label set
    for i, labels in enumerate(sets):
        idx = [s for s, slot in enumerate(slots) if slot.labels == i]
        tag = labels.prefix(prefix) + (f"/seed{labels.seed}" if labels.kind == "shuffled" else "")
        paths.append((tag, idx))
    grid = [slots[s].l2 for s in paths[0][1]]
    wandb_runs = [lg.experiment for lg in wandb_loggers(loggers)]
    if not wandb_runs:
        return
    import wandb

    columns = ["probe", "labels", "l2", "val_acc", "test_acc", "lbfgs_iters", "train_loss"]
    data = [
        [
            name,
            tag,
            slots[s].l2,
            *(float(m[k, s]) for m in (metrics.val_acc, metrics.test_acc)),
            int(metrics.iterations[k, s]),
            float(metrics.train_loss[k, s]),
        ]
        for tag, idx in paths
        for s in idx
        for k, name in enumerate(view.probe_names)
    ]
    task_idx = paths[0][1]
    chart = wandb.plot.line_series(
        xs=[math.log10(max(v, 1e-12)) for v in grid],  # a zero penalty at -12
        ys=[[float(metrics.val_acc[k, s]) for s in task_idx] for k in range(len(view.probe_names))],
        keys=list(view.probe_names),
        title=f"{prefix}: validation accuracy over the L2 penalty",
        xname="log10 l2",
    )
    for experiment in wandb_runs:
        experiment.log(
            {
                f"lbfgs/{prefix}": wandb.Table(columns=columns, data=data),
                f"val_acc_by_l2/{prefix}": chart,
            }
        )


def wandb_loggers(loggers: list[Any]) -> list[Any]:
    from pytorch_lightning.loggers import WandbLogger

    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def _slot_row(
    metrics: SlotMetrics, k: int, s: int, slot: Slot, chance: float, num_params: int
) -> dict[str, Any]:
    def num(v: float) -> float | None:
        return None if not np.isfinite(v) else float(v)

    return {
        "val_acc": num(metrics.val_acc[k, s]),
        "val_f1": num(metrics.val_f1[k, s]),
        "best_epoch": None,
        "test_acc": num(metrics.test_acc[k, s]),
        "test_f1": num(metrics.test_f1[k, s]),
        "chance": chance,
        "num_params": num_params,
        "l2": slot.l2,
        "solver": "lbfgs",
        "lbfgs_iters": int(metrics.iterations[k, s]),
        "seed_invariant": True,
    }


def _control_labels(view: FeatureView) -> np.ndarray:
    """Each type keeps one random label drawn from the task's label distribution."""
    if view.control_types is None:
        raise ValueError("this task defines no control types; run without probing.control")
    used = view.labels >= 0
    control = np.full_like(view.labels, -1)
    control[used] = control_labels(
        view.control_types[used], view.labels[used], view.num_classes, seed=0
    )
    return control


def _shuffled(view: FeatureView, seed: int) -> np.ndarray:
    used = view.labels >= 0
    out = view.labels.copy()
    out[used] = shuffled_labels(view.labels[used], seed=seed)
    return out


def _add_control_ceiling(
    rows: list[dict[str, Any]], view: FeatureView, control: np.ndarray
) -> None:
    """``control_ceiling``: the test accuracy of a type -> label lookup, the best any probe can
    do on the control task, and how often test types recur in training."""
    assert view.control_types is not None
    ceiling = lookup_ceiling(
        view.control_types, control, view.row_split, SPLIT_IDS["train"], SPLIT_IDS["test"]
    )
    for row in rows:
        row["control_ceiling"] = ceiling["ceiling"]
        row["control_type_recurrence"] = ceiling["recurrence"]
