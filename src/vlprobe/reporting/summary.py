"""The report's tables: the best probe per task and group (chosen on validation), every probe
of every group, and group comparisons with Welch intervals.

Built from an :class:`~vlprobe.reporting.aggregate.Aggregate`; :mod:`.report` writes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vlprobe.reporting.aggregate import Aggregate, Cell, Group, is_number, welch_difference
from vlprobe.reporting.labels import PROBE

# measures whose spread over seeds the per-probe table reports (besides the metric)
SPREAD_COLUMNS = (
    "control_test_acc",
    "selectivity",
    "mdl_compression",
    "mdl_compression_over_prior",
)


def selection_column(metric: str, columns: Iterable[str]) -> str:
    """Pick the best probe on validation (``test_acc`` -> ``val_acc``) when there is one, so the
    reported test number is not the maximum of many noisy test numbers."""
    val = metric.replace("test_", "val_", 1)
    return val if metric.startswith("test_") and val in set(columns) else metric


def best_cell(cells: Sequence[Cell], metric: str) -> Cell | None:
    """The cell with the highest mean selection metric (validation when present)."""
    columns = {c for cell in cells for c in cell.stats}
    select = selection_column(metric, columns)
    finite = [c for c in cells if math.isfinite(c.get(select).mean)]
    return max(finite, key=lambda c: c.get(select).mean) if finite else None


def summary_rows(agg: Aggregate) -> list[dict[str, Any]]:
    """Per task, series and group: the best probe's metric (mean, std, CI, seeds), its
    selectivity and MDL compression (over the uniform code and over the label prior) when
    present, and chance."""
    out = []
    for task, series in agg.series():
        metric = agg.metrics[task]
        for group in agg.groups:
            cells = agg.select(task=task, series=series, group=group)
            best = best_cell(cells, metric)
            if best is None:
                continue
            stat = best.get(metric)
            out.append(
                {
                    "task": task,
                    "series": series,
                    "group": group.label,
                    "metric": metric,
                    "best_probe": best.probe,
                    "selected_by": selection_column(metric, best.stats),
                    "mean": stat.mean,
                    "std": stat.std,
                    "ci95": stat.ci95,
                    "n_seeds": stat.n,
                    "selectivity": best.get("selectivity").mean,
                    "selectivity_ci95": best.get("selectivity").ci95,
                    "mdl_compression": best.get("mdl_compression").mean,
                    "mdl_compression_over_prior": best.get("mdl_compression_over_prior").mean,
                    "chance": best.get("chance").mean,
                }
            )
    return out


def cell_rows(agg: Aggregate) -> list[dict[str, Any]]:
    """Every probe of every group (long form): the mean of each numeric column, and std and CI
    of the measures that vary by seed (the metric, its validation twin, control, selectivity,
    MDL compression)."""
    out = []
    for cell in agg.cells:
        metric = agg.metrics[cell.task]
        spread = {metric, selection_column(metric, cell.stats), *SPREAD_COLUMNS}
        row: dict[str, Any] = {
            "task": cell.task,
            "series": cell.series,
            "probe": cell.probe,
            **cell.probe_id.as_fields(),
            "group": cell.group.label,
            "n_runs": len(cell.seeds),
            "n_seeds": cell.get(metric).n,
        }
        for column, stat in cell.stats.items():
            row[column] = stat.mean
            if column in spread:
                row |= {f"{column}_std": stat.std, f"{column}_ci95": stat.ci95}
        out.append(row)
    return out


@dataclass(frozen=True)
class Comparison:
    """Two groups that differ in exactly one identity key."""

    key: str
    a: Group
    b: Group


def comparisons(agg: Aggregate, compare_by: Sequence[str] = ()) -> list[Comparison]:
    """Pairs of groups differing only in one key of ``compare_by`` (default: every varying
    identity key). The probe (the rows' family and capacity) is one key, ``probe``: two groups
    that differ in it may also differ in any ``probe.*`` config key (an MLP has a dropout, a
    linear probe none). ``a`` is the group whose value sorts first (false before true, so
    pre-trained - random init and matched - mismatched; numbers ascending; names
    alphabetically; smaller probes first)."""
    out = []
    for key in dict.fromkeys(compare_by or agg.varying):
        for i, g in enumerate(agg.groups):
            for h in agg.groups[i + 1 :]:
                if _differ_only_in(g, h, key):
                    order = capacity_order if key == PROBE else _order
                    a, b = sorted((g, h), key=lambda grp: order(grp.value(key)))
                    out.append(Comparison(key, a, b))
    return out


def _differ_only_in(g: Group, h: Group, key: str) -> bool:
    gv, hv = dict(g.key), dict(h.key)
    if set(gv) != set(hv) or gv.get(key) == hv.get(key):
        return False
    free = (lambda k: k == key or k.startswith(f"{PROBE}.")) if key == PROBE else key.__eq__
    return all(gv[k] == hv[k] for k in gv if not free(k))


def _order(value: Any) -> tuple[int, float, str]:
    if value is None:
        return (2, 0.0, "")
    if is_number(value):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def capacity_order(spec: tuple[str, tuple[tuple[str, Any], ...]]) -> tuple:
    """Probes by size without knowing any family: fewer capacity keys first (a linear probe
    has none), then by family name and capacity values as numbers (64 before 256)."""
    family, capacity = spec
    values = tuple(float(v) if is_number(v) else math.inf for _, v in capacity)
    return (float(len(capacity)), family, values)


def comparison_rows(agg: Aggregate, comparison: Comparison) -> list[dict[str, Any]]:
    """Per task, series and probe both groups have: the two means and ``a - b`` with its
    Welch 95% CI; ``excludes_zero`` flags differences the seeds support."""
    out = []
    for task, series in agg.series():
        metric = agg.metrics[task]
        b_cells = {c.probe_id: c for c in agg.select(task=task, series=series, group=comparison.b)}
        for cell in agg.select(task=task, series=series, group=comparison.a):
            other = b_cells.get(cell.probe_id)
            if other is None:
                continue
            a, b = cell.get(metric), other.get(metric)
            diff = welch_difference(a, b)
            out.append(
                {
                    "key": comparison.key,
                    "a": comparison.a.label,
                    "b": comparison.b.label,
                    "task": task,
                    "series": series,
                    "probe": cell.probe,
                    "kind": cell.probe_id.kind,
                    "metric": metric,
                    "a_mean": a.mean,
                    "a_ci95": a.ci95,
                    "b_mean": b.mean,
                    "b_ci95": b.ci95,
                    "diff": diff.mean,
                    "diff_ci95": diff.ci95,
                    "excludes_zero": abs(diff.mean) > diff.ci95
                    if math.isfinite(diff.ci95)
                    else None,
                }
            )
    return out
