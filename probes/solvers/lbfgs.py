"""Linear probes solved to the optimum by batched full-batch L-BFGS, run by the Trainer.

Every (label set x L2 penalty) of every probe is a slot (``probes.full_batch``). A group of
probes whose standardised features fit ``loader.memory_budget_mb`` is read once onto the
Trainer's device, and ``FullBatchLBFGS`` (manual optimisation) takes one L-BFGS iteration of
every slot per training step: the whole view is the batch. So ``trainer.accelerator``,
``devices``, the loggers and callbacks apply; the solve stays in float32 whatever
``trainer.precision`` says (a line search on a half-precision loss cannot tell the steps
near the optimum apart), and it runs in one process (a distributed strategy is refused).

The objective is convex and every slot starts at zero, as scikit-learn does, so the seed
changes nothing but the shuffled control's labels: task and control label sets are solved
once and shared by every seed (``seed_invariant`` in the rows).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import Tensor

from datamodules.views import FeatureView
from probes.full_batch import (
    SPLITS,
    LBFGSRun,
    LBFGSSettings,
    Params,
    Slot,
    SlotMetrics,
    Solution,
    confusion,
    free_logits,
    initial_params,
    probe_groups,
    probes_per_problem,
    read_standardised,
    stop_names,
    view_dim,
)
from probes.metrics import accuracy_from_confusion, macro_f1_from_confusion
from probes.plan import Plan
from probes.settings import Settings
from probes.solvers.base import Candidates, Solved
from vlprobe.cache.schema import SPLIT_IDS

log = logging.getLogger(__name__)
#: one problem: (G, N, D) standardised features, (N, S, C) one-hot targets, (S,) penalties, init
Problem = tuple[Tensor, Tensor, Tensor, Params]
FULL_PRECISION = ("32-true", "32", "64-true", "64")
CONVERGED = ("gtol", "ftol")  # scikit-learn's converged stops (``full_batch.STOPS``)
_said: set[str] = set()  # what has been said once in this process


class FullBatchLBFGS(pl.LightningModule):
    """Batched L-BFGS of several independent problems, one iteration of each per training
    step (manual optimisation: the solver is its own optimiser). The data is held on the
    module's device; the "batches" only count iterations. After ``trainer.fit``,
    :attr:`solution` holds each problem's (parameters, iterations, final loss)."""

    def __init__(self, problems: list[Problem], settings: LBFGSSettings) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.problems, self.settings = problems, settings
        self.runs: list[LBFGSRun] = []
        self.solution: list[Solution] = []

    def train_dataloader(self) -> range:
        return range(self.settings.max_iter)  # at most one epoch of max_iter iterations

    def configure_optimizers(self) -> list:
        return []

    def on_train_start(self) -> None:
        with float32(self.device.type):
            self.runs = [
                LBFGSRun(
                    *(_to(t, self.device) for t in p[:3]), _to(p[3], self.device), self.settings
                )
                for p in self.problems
            ]

    def on_train_batch_start(self, batch: int, batch_idx: int) -> int | None:
        return -1 if all(run.finished for run in self.runs) else None  # -1: the epoch ends

    def training_step(self, batch: int, batch_idx: int) -> None:
        with float32(self.device.type):
            for run in self.runs:
                run.step()

    def on_train_end(self) -> None:
        self.solution = [run.result() for run in self.runs]
        self.runs = []


def _to(t: Tensor | Params, device: torch.device) -> Tensor | Params:
    return t.to(device) if isinstance(t, Tensor) else (t[0].to(device), t[1].to(device))


@contextlib.contextmanager
def float32(device_type: str) -> Iterator[None]:
    """No autocast and float32 defaults, whatever precision the Trainer runs at."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.set_default_dtype(default)


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """Lightning's info lines (devices, "fit stopped") held back when ``quiet``."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    before = logger.level
    if quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)


def make_trainer(settings: Settings, loggers: list | None = None) -> pl.Trainer:
    """The configured Trainer for one full-batch solve (one epoch, no validation); refuses a
    distributed strategy in one line, and says once that the solve keeps float32. Its device
    lines are shown once per process."""
    with _quiet("trainer" in _said):
        trainer = settings.trainer(
            logger=loggers or False,
            callbacks=[make() for make in settings.callbacks],
            max_epochs=1,
            num_sanity_val_steps=0,
        )
    _said.add("trainer")
    if not isinstance(trainer.strategy, SingleDeviceStrategy):
        raise ValueError(
            f"probing.solver={settings.probing.solver} solves linear probes by full-batch "
            f"L-BFGS in one process on one device, and trainer.strategy is "
            f"{type(trainer.strategy).__name__} over {trainer.world_size} process(es): use "
            "probing.solver=sgd for a distributed run, or trainer.strategy=auto trainer.devices=1"
        )
    precision = str(trainer.precision)
    if precision not in FULL_PRECISION and "precision" not in _said:
        _said.add("precision")
        log.warning(
            "full-batch L-BFGS keeps float32 (trainer.precision=%s applies to Adam probes "
            "only): its line search needs the loss to float32 resolution",
            precision,
        )
    return trainer


def solve_problems(
    settings: Settings, problems: list[Problem], lbfgs: LBFGSSettings, loggers: list | None = None
) -> list[Solution]:
    """Each problem solved by ``FullBatchLBFGS`` in one fit of a fresh Trainer."""
    module = FullBatchLBFGS(problems, lbfgs)
    trainer = make_trainer(settings, loggers)
    with _quiet(True):  # the progress bar shows the iterations
        trainer.fit(module)
    return module.solution


def device_of(settings: Settings) -> torch.device:
    """Where the configured Trainer would solve (data is read straight onto it)."""
    return make_trainer(settings).strategy.root_device


def solve_lbfgs(view: FeatureView, plan: Plan, settings: Settings) -> Solved:
    """Every (label set, penalty) slot of every probe of ``view``; per (label set, seed) its
    candidates strongest penalty first (a tie goes to the larger penalty)."""
    slots: list[Slot] = []
    groups = []
    for i, labels in enumerate(plan.sets):
        first = len(slots)
        slots += [Slot(i, None, labels.prefix(plan.prefix), l2) for l2 in plan.grid]
        idx = list(range(first, len(slots)))[::-1]
        for seed in plan.seeds if labels.seed is None else [labels.seed]:
            groups.append((labels, seed, idx))
    metrics = fit_view(view, [s.labels for s in plan.sets], slots, settings)
    num_params = (view_dim(view) + 1) * free_logits(view.num_classes)
    solved = Solved([], slots, metrics)
    for labels, seed, idx in groups:
        rows = [
            [_slot_row(metrics, k, s, slots[s], num_params) for k in range(len(view.probe_names))]
            for s in idx
        ]
        for row_c in rows:
            for name, row in zip(view.probe_names, row_c, strict=True):
                row["name"] = f"{labels.prefix(plan.prefix)}/{name}"
        solved.groups.append(Candidates(labels, seed, rows, idx))
    return solved


def fit_view(
    view: FeatureView, label_sets: list[np.ndarray], slots: list[Slot], settings: Settings
) -> SlotMetrics:
    """Solve every slot of every probe of ``view``, a group of probes per Trainer fit; rows
    are the task's labelled rows (every label set labels the same rows).

    Each label set's slots are problems of their own: a slot's float32 path depends on the
    width of the matmul it shares, so a task row is bit-identical with or without the
    control and shuffled label sets in the run."""
    rows = {s: view.rows(SPLIT_IDS[s]) for s in SPLITS}
    classes, dim = view.num_classes, view_dim(view)
    device = device_of(settings)
    which = [slot.labels for slot in slots]
    targets = {
        s: torch.from_numpy(np.stack([lab[rows[s]] for lab in label_sets], 1)[:, which])
        for s in SPLITS
    }
    onehot = F.one_hot(targets["train"], classes).float().to(device)  # (N, S, C)
    l2 = torch.tensor([sl.l2 for sl in slots], dtype=torch.float32, device=device)
    total = sum(r.size for r in rows.values())
    shape = (len(view.probe_names), len(slots))
    out = SlotMetrics(
        *(np.zeros(shape) for _ in range(4)),
        np.zeros(shape, dtype=np.int64),
        np.zeros(shape),
        np.empty(shape, dtype=object),
        np.zeros(shape),
    )
    by_set = [
        torch.tensor([s for s, w in enumerate(which) if w == i], device=device)
        for i in sorted(set(which))
    ]
    lbfgs = LBFGSSettings(max_iter=settings.probing.max_iter)
    for group in probe_groups(shape[0], total * dim * 4, settings.memory_budget()):
        x, mean, std = read_standardised(view, rows, group, device)
        names = [view.probe_names[k] for k in group]
        w0, b0 = (t.to(device) for t in initial_params(names, slots, dim, classes))
        step = probes_per_problem(rows["train"].size, dim)
        parts = [(a, cols) for a in range(0, len(group), step) for cols in by_set]
        problems = [
            (
                x["train"][a : a + step],
                onehot[:, cols].contiguous(),
                l2[cols],
                (w0[a : a + step][:, :, cols], b0[a : a + step][:, cols]),
            )
            for a, cols in parts
        ]
        solved = solve_problems(settings, problems, lbfgs, settings.loggers)
        params = (torch.empty_like(w0), torch.empty_like(b0))
        for (a, cols), sol in zip(parts, solved, strict=True):
            probes, c = np.array(group[a : a + step])[:, None], cols.cpu().numpy()[None, :]
            out.iterations[probes, c] = sol.iterations.cpu().numpy()
            out.train_loss[probes, c] = sol.loss.cpu().numpy()
            out.stop[probes, c] = stop_names(sol.stop.cpu().numpy())
            out.grad_max[probes, c] = sol.grad_max.cpu().numpy()
            params[0][a : a + step, :, cols] = sol.params[0]
            params[1][a : a + step, cols] = sol.params[1]
        if settings.probing.save_weights:
            out.weights = out.weights or {}
            kept = (params[0], params[1], mean, std)
            out.weights.update({k: tuple(t[i].cpu() for t in kept) for i, k in enumerate(group)})
        for split, acc, f1 in (
            ("val", out.val_acc, out.val_f1),
            ("test", out.test_acc, out.test_f1),
        ):
            if rows[split].size == 0:
                acc[group] = f1[group] = np.nan
                continue
            conf = confusion(x[split], targets[split].to(device), params, classes).cpu()
            acc[group] = accuracy_from_confusion(conf).numpy()
            f1[group] = macro_f1_from_confusion(conf).numpy()
        del x
    return out


def _slot_row(metrics: SlotMetrics, k: int, s: int, slot: Slot, num_params: int) -> dict:
    def num(v: float) -> float | None:
        return None if not np.isfinite(v) else float(v)

    return {
        "val_acc": num(metrics.val_acc[k, s]),
        "val_f1": num(metrics.val_f1[k, s]),
        "best_epoch": None,
        "test_acc": num(metrics.test_acc[k, s]),
        "test_f1": num(metrics.test_f1[k, s]),
        "chance": None,  # the label set's: set by the selection
        "num_params": num_params,
        "l2": slot.l2,
        "solver": "lbfgs",
        "lbfgs_iters": int(metrics.iterations[k, s]),
        "converged": metrics.stop[k, s] in CONVERGED,
        "lbfgs_stop": str(metrics.stop[k, s]),
        "grad_max": float(metrics.grad_max[k, s]),
        "seed_invariant": True,
    }
