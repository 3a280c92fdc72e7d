"""Everything probing sends to the run's loggers (CSV, W&B ...), in one place.

Solvers and tasks return data; this module turns it into logged metrics, tables and charts:
the full-batch solver's chosen slots and penalty path (``log_solve``), a task's measured
numbers (``log_finite``) and a run's results table, figures and summary (``log_results``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datamodules.views import FeatureView
from probes.full_batch import Slot, SlotMetrics
from probes.plan import Plan
from probes.solvers.base import Solved

if TYPE_CHECKING:
    from probes.tasks.base import TaskOutput


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


def log_results(loggers: list[Any], output: TaskOutput, json_path: Path) -> None:
    """W&B gets the task's rows as a table, its figures and summary; every logger the path
    of results.json."""
    rows = output.rows
    for wb in wandb_loggers(loggers):
        import wandb

        columns = list(dict.fromkeys(k for row in rows for k in row))
        data = [[_cell(row.get(c)) for c in columns] for row in rows]
        wb.experiment.log({"results": wandb.Table(columns=columns, data=data)})
        wb.experiment.log({f"figures/{k}": wandb.Image(str(p)) for k, p in output.figures.items()})
        wb.experiment.summary.update(output.summary)
    for lg in loggers:
        lg.log_hyperparams({"results_json": str(json_path)})


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def log_solve(
    loggers: list[Any], view: FeatureView, plan: Plan, solved: Solved, choices: list[list[int]]
) -> None:
    """The full-batch solver's choice per (label set, seed) and probe at step 0 (validation
    and test accuracy, penalised loss, penalty ``l2/<labels>/<probe>``; ``train/loss`` their
    sum, as the Adam path's), and its penalty path. The Adam path logs through Lightning."""
    if solved.metrics is None or not loggers:
        return
    metrics = solved.metrics
    logged: dict[str, float] = {}
    for group, picks in zip(solved.groups, choices, strict=True):
        tag = plan.tag(group.labels.prefix(plan.prefix), group.seed)
        for k, name in enumerate(view.probe_names):
            s = group.slots[picks[k]]
            for split, values in (("val", metrics.val_acc), ("test", metrics.test_acc)):
                logged[f"{split}/acc/{tag}/{name}"] = _finite(values[k, s]) or float("nan")
            logged[f"train/loss/{tag}/{name}"] = float(metrics.train_loss[k, s])
            logged[f"l2/{tag}/{name}"] = solved.slots[s].l2
    losses = [v for key, v in logged.items() if key.startswith("train/loss/")]
    logged["train/loss"] = float(np.sum(losses))
    for lg in loggers:
        lg.log_metrics(logged, step=0)
    log_penalty_path(loggers, view, plan, solved.slots, metrics)


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def log_penalty_path(
    loggers: list[Any], view: FeatureView, plan: Plan, slots: list[Slot], metrics: SlotMetrics
) -> None:
    """What the penalty search saw: for every logger, step ``i`` holds each probe's
    validation accuracy at the ``i``-th penalty (``val/acc_by_l2/<labels>/<probe>``) and the
    penalty itself (``l2_grid``, an x-axis to pick; not the chosen penalty, which is
    ``l2/<labels>/<probe>``); W&B also gets one table of every slot and a
    line chart of validation accuracy over log10 of the penalty per probe (task labels)."""
    prefix = plan.prefix
    paths = []  # (row prefix, slot indices in increasing penalty) per solved label set
    for i, labels in enumerate(plan.sets):
        idx = [s for s, slot in enumerate(slots) if slot.labels == i]
        tag = labels.prefix(prefix) + (f"/seed{labels.seed}" if labels.kind == "shuffled" else "")
        paths.append((tag, idx))
    grid = [slots[s].l2 for s in paths[0][1]]
    for step, l2 in enumerate(grid):
        curve = {"l2_grid": l2}
        for tag, idx in paths:
            for k, name in enumerate(view.probe_names):
                curve[f"val/acc_by_l2/{tag}/{name}"] = float(metrics.val_acc[k, idx[step]])
        for lg in loggers:
            lg.log_metrics(curve, step=step)
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
