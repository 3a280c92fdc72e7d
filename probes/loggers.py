"""Everything probing sends to the run's loggers (CSV, W&B ...), in one place.

Solvers and tasks return data; this module turns it into logged metrics, tables and charts:
the full-batch solver's chosen slots and penalty path (``log_solve``), a task's measured
numbers (``log_finite``). A run's rows, figures and artifacts go to W&B at its end, as tables
and by-layer charts (``vlprobe.reporting.wandb_publish``): no history key per probe.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from datamodules.views import FeatureView
from probes.full_batch import Slot, SlotMetrics
from probes.plan import Plan
from probes.solvers.base import Solved

if TYPE_CHECKING:
    pass


def wandb_loggers(loggers: list[Any]) -> list[Any]:
    from pytorch_lightning.loggers import WandbLogger

    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def log_finite(loggers: list[Any], metrics: dict[str, float]) -> None:
    """Send the finite values to every logger (NaN = not measurable, left out).

    No Trainer runs here to flush buffered loggers (CSVLogger writes metrics.csv on ``save``),
    so each one is saved right away.
    """
    clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
    for lg in loggers:
        lg.log_metrics(clean)
        save = getattr(lg, "save", None)
        if callable(save):
            save()


def log_solve(
    loggers: list[Any], view: FeatureView, plan: Plan, solved: Solved, choices: list[list[int]]
) -> None:
    """The full-batch solver's summed penalised loss at step 0 (``train/loss``, as the Adam
    path's) and its penalty path; per-probe values reach W&B as tables at the run's end."""
    if solved.metrics is None or not loggers:
        return
    metrics = solved.metrics
    losses = [
        float(metrics.train_loss[k, group.slots[picks[k]]])
        for group, picks in zip(solved.groups, choices, strict=True)
        for k in range(len(view.probe_names))
    ]
    for lg in loggers:
        lg.log_metrics({"train/loss": float(np.sum(losses))}, step=0)
    log_penalty_path(loggers, view, plan, solved.slots, metrics)


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def log_penalty_path(
    loggers: list[Any], view: FeatureView, plan: Plan, slots: list[Slot], metrics: SlotMetrics
) -> None:
    """What the penalty search saw, for W&B: one table of every slot and a line chart of
    validation accuracy over log10 of the penalty per probe (task labels); two keys per
    probed input, however many probes (no per-probe history keys)."""
    prefix = plan.prefix
    paths = []  # (row prefix, slot indices in increasing penalty) per solved label set
    for i, labels in enumerate(plan.sets):
        idx = [s for s, slot in enumerate(slots) if slot.labels == i]
        tag = labels.prefix(prefix) + (f"/seed{labels.seed}" if labels.kind == "shuffled" else "")
        paths.append((tag, idx))
    grid = [slots[s].l2 for s in paths[0][1]]
    wandb_runs = [lg.experiment for lg in wandb_loggers(loggers)]
    if not wandb_runs:
        return
    import wandb

    columns = [
        *("probe", "labels", "l2", "val_acc", "test_acc"),
        *("lbfgs_iters", "lbfgs_stop", "train_loss"),
    ]
    data = [
        [
            name,
            tag,
            slots[s].l2,
            *(float(m[k, s]) for m in (metrics.val_acc, metrics.test_acc)),
            int(metrics.iterations[k, s]),
            str(metrics.stop[k, s]),
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
