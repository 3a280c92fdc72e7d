"""From every candidate a solver trained to one row per probe.

Per (label set, seed) each probe keeps the candidate with the best validation accuracy
(ties: the first, i.e. the strongest penalty), as scikit-learn's C search and SentEval do,
among the candidates whose solve converged: a penalty stopped by ``probing.max_iter`` or a
failed line search is where the solver's path left it, not at the optimum, and is chosen
only when nothing converged, its row saying ``converged: false``, with a warning.
The task's rows then get seed statistics, the control and shuffled-control accuracies
(selectivity), the control task's ceiling and the Wilson interval of the test accuracy.
``view_rows`` is the one place where a view's rows are assembled.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from datamodules.views import FeatureView
from probes.plan import Plan, majority_chance
from probes.solvers.base import Candidates, Solved
from vlprobe.analysis.controls import lookup_ceiling, selectivity
from vlprobe.analysis.stats import MIN_SEEDS, mean_std_ci, wilson_interval
from vlprobe.cache.schema import SPLIT_IDS

log = logging.getLogger(__name__)

# row columns averaged over seeds (each probe's best epoch and val F1 too, not the first seed's)
SEED_METRICS = ("test_acc", "val_acc", "test_f1", "val_f1", "best_epoch")
#: per label kind, per seed, one chosen row per probe
Runs = dict[str, list[list[dict[str, Any]]]]


def select(view: FeatureView, plan: Plan, solved: Solved) -> tuple[list[dict[str, Any]], list]:
    """The view's rows, and per group of ``solved`` the chosen candidate of each probe."""
    runs: Runs = {}
    choices = []
    for group in solved.groups:
        chosen, picks = best_candidates(view, group, edges=plan.solver == "lbfgs")
        runs.setdefault(group.labels.kind, []).append(chosen)
        choices.append(picks)
    if plan.solver == "lbfgs":
        _warn_edges(runs["task"][0], plan.grid)
        _warn_unconverged([row for run in runs.values() for rows in run for row in rows])
    return view_rows(view, plan, runs), choices


def best_candidates(
    view: FeatureView, group: Candidates, edges: bool
) -> tuple[list[dict[str, Any]], list[int]]:
    """Each probe's row under its best converged candidate on validation (ties: the first),
    with the label set's chance; ``edges``: flag a penalty at the edge of the grid
    (``l2_at_edge``). ``unconverged_skipped``: an unconverged candidate scored higher."""
    chance = majority_chance(view.with_labels(group.labels.labels))
    rows, picks = [], []
    for k in range(len(view.probe_names)):
        val = [_val_acc(candidate[k]) for candidate in group.rows]
        ok = [candidate[k].get("converged") is not False for candidate in group.rows]
        choosable = [v if good else -np.inf for v, good in zip(val, ok, strict=True)]
        pick = int(np.argmax(choosable if any(ok) else val))  # the first maximum
        row = {**group.rows[pick][k], "chance": chance}
        if not all(ok):
            row["unconverged_skipped"] = bool(max(val) > val[pick])
        if edges:
            row["l2_at_edge"] = at_edge(val[::-1], len(val) - 1 - pick)
        rows.append(row)
        picks.append(pick)
    return rows, picks


def _val_acc(row: dict[str, Any]) -> float:
    return row["val_acc"] or 0.0


def at_edge(val: list[float] | np.ndarray, j: int) -> bool:
    """Whether choice ``j`` along the grid's validation accuracies ``val`` (weakest penalty
    first) may have an optimum beyond the grid: the first penalty (then the only maximum), or
    the last one strictly above its neighbour (a flat curve, e.g. a probe without signal, is
    not flagged)."""
    last = len(val) - 1
    return last > 0 and (j == 0 or (j == last and bool(val[last] > val[last - 1])))


def _warn_edges(rows: list[dict[str, Any]], grid: list[float]) -> None:
    edge = [r["name"] for r in rows if r["l2_at_edge"]]
    if edge:
        log.warning(
            "%d of %d probes chose an L2 penalty at the edge of probing.l2_grid %s (%s): the "
            "optimum may lie outside it; widen the grid",
            len(edge),
            len(rows),
            grid,
            _first_names(edge),
        )


def _warn_unconverged(rows: list[dict[str, Any]]) -> None:
    """One line each for rows whose every penalty failed to converge and rows where a
    better-scoring unconverged penalty was passed over."""
    for what, flagged in (
        (
            "no L2 penalty converged; their rows say converged=false",
            [r for r in rows if r.get("converged") is False],
        ),
        (
            "a penalty with better validation accuracy did not converge and was passed over",
            [r for r in rows if r.get("unconverged_skipped")],
        ),
    ):
        if flagged:
            names = [r["name"] for r in flagged]
            log.warning(
                "%d probe(s): %s (%s); raise probing.max_iter",
                len(names),
                what,
                _first_names(names),
            )


def _first_names(names: list[str]) -> str:
    """The first three names of a warning, and "..." when there are more."""
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def view_rows(view: FeatureView, plan: Plan, runs: Runs) -> list[dict[str, Any]]:
    """One row per probe of ``view``: the first seed's task row, named, with split sizes,
    seed statistics, controls and the test accuracy's interval."""
    sizes = {f"n_{s}": int(view.rows(i).size) for s, i in SPLIT_IDS.items()}
    rows = []
    for k, probe_name in enumerate(view.probe_names):
        first = runs["task"][0][k]
        rows.append({**first, "probe": probe_name, "name": f"{plan.prefix}/{probe_name}", **sizes})
    if len(plan.seeds) > 1:
        add_seed_statistics(rows, runs["task"], plan.seeds)
    add_controls(rows, runs)
    add_test_interval(rows)
    control = next((s.labels for s in plan.sets if s.kind == "control"), None)
    if control is not None:
        add_control_ceiling(rows, view, control)
    return rows


def add_seed_statistics(
    rows: list[dict[str, Any]], task: list[list[dict[str, Any]]], seeds: list[int]
) -> None:
    """Mean, std, 95% CI half-width and per-seed values of ``SEED_METRICS`` over seeds;
    ``few_seeds`` when that interval rests on fewer than ``MIN_SEEDS``."""
    for metric in SEED_METRICS:
        values = [[r[metric] for r in run] for run in task]
        if all(v is None for run in values for v in run):
            continue  # e.g. best_epoch of the full-batch solver, which has no epochs
        stats = seed_stats(values)
        for k, row in enumerate(rows):
            row[metric] = stats["mean"][k]
            row[f"{metric}_std"] = stats["std"][k]
            row[f"{metric}_ci95"] = stats["ci"][k]
            row[f"{metric}_per_seed"] = [run[k][metric] for run in task]
    for k, row in enumerate(rows):
        row["seeds"] = seeds
        row["few_seeds"] = len(seeds) < MIN_SEEDS
        if "l2" in row:
            row["l2_per_seed"] = [run[k]["l2"] for run in task]


def add_controls(rows: list[dict[str, Any]], runs: Runs) -> None:
    """``control_test_acc`` / ``selectivity`` and ``shuffled_test_acc`` / ``shuffled_gap``
    (mean over seeds), and the penalty each control chose."""
    for kind, gap in (("control", "selectivity"), ("shuffled", "shuffled_gap")):
        if kind not in runs:
            continue
        accs = seed_stats([[r["test_acc"] for r in run] for run in runs[kind]])["mean"]
        for k, (row, acc) in enumerate(zip(rows, accs, strict=True)):
            row[f"{kind}_test_acc"] = acc
            if "l2" in row:
                row[f"{kind}_l2"] = runs[kind][0][k]["l2"]
            row[gap] = float(selectivity(np.float64(row["test_acc"] or np.nan), np.float64(acc)))


def seed_stats(values: list[list[float | None]]) -> dict[str, list]:
    """Per probe mean, std and 95% CI half-width over seeds (NaN-safe for missing values)."""
    arr = np.array([[np.nan if v is None else v for v in run] for run in values], float)
    mean, std, half = mean_std_ci(arr)
    return {"mean": mean.tolist(), "std": np.atleast_1d(std).tolist(), "ci": half.tolist()}


def add_test_interval(rows: list[dict[str, Any]]) -> None:
    """``test_acc_low`` / ``test_acc_high``: the Wilson 95% interval of each row's test
    accuracy over its ``n_test`` examples (the test set is a sample; seeds share it)."""
    for row in rows:
        acc = row.get("test_acc")
        low, high = wilson_interval(np.nan if acc is None else acc, row.get("n_test", 0))
        row["test_acc_low"], row["test_acc_high"] = float(low), float(high)


def add_control_ceiling(rows: list[dict[str, Any]], view: FeatureView, control: np.ndarray) -> None:
    """``control_ceiling``: the test accuracy of a type -> label lookup, the best any probe can
    do on the control task, and how often test types recur in training."""
    assert view.control_types is not None
    ceiling = lookup_ceiling(
        view.control_types, control, view.row_split, SPLIT_IDS["train"], SPLIT_IDS["test"]
    )
    for row in rows:
        row["control_ceiling"] = ceiling["ceiling"]
        row["control_type_recurrence"] = ceiling["recurrence"]
