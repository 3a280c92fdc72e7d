"""``vlprobe report``: many runs (seeds, models, baselines, probe sizes) in one paper-style
report: by-layer curves with seed confidence bands, layer x head heatmaps, a task x model
table, group comparisons and probe-complexity curves, as PNG, Markdown and CSV.

The numbers come from :mod:`.aggregate`; this module draws and writes them. Figures use the
Agg canvas of :mod:`.figures` (no display, nothing left registered after saving).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from vlprobe.analysis.stats import MIN_SEEDS  # fewer seeds per setting earn a warning
from vlprobe.reporting.aggregate import Aggregate, Cell, Group, aggregate, load_runs
from vlprobe.reporting.figures import (
    new_figure,
    place_legend,
    plot_by_layer,
    plot_layer_head_heatmap,
    save_figure,
)
from vlprobe.reporting.labels import (
    PROBE,
    format_value,
    probe_label,
    slug,
    varying_capacity,
)
from vlprobe.reporting.labels import label as key_label
from vlprobe.reporting.summary import (
    Comparison,
    capacity_order,
    cell_rows,
    comparison_rows,
    comparisons,
    selection_column,
    summary_rows,
)
from vlprobe.reporting.table import write_results

DEFAULT_METRIC = "test_acc"


@dataclass
class Report:
    """What :func:`build_report` wrote, and the aggregate behind it."""

    out: Path
    markdown: Path
    csv: Path
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    data: Aggregate | None = None
    summary: list[dict[str, Any]] = field(default_factory=list)


def build_report(
    paths: Sequence[str | Path],
    out: str | Path = "report",
    metric: str = DEFAULT_METRIC,
    compare_by: Sequence[str] = (),
) -> Report:
    """Find the runs under ``paths``, aggregate them over seeds and write the report to
    ``out``: ``report.md``, ``report.csv`` (best probe per task and group), ``probes.csv``
    (every probe), ``comparisons.csv`` and ``figures/*.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, skipped = load_runs(paths)
    agg = aggregate(runs, metric, compare_by)
    agg.skipped = skipped
    pairs = comparisons(agg, compare_by)
    figures = {
        **by_layer_figures(agg, out / "figures"),
        **axis_figures(agg, out / "figures"),
        **head_figures(agg, out / "figures"),
        **complexity_figures(agg, out / "figures"),
    }
    summary = summary_rows(agg)
    diffs = [row for pair in pairs for row in comparison_rows(agg, pair)]
    _, csv_path = write_results(summary, out, "report")
    tables = {"report": csv_path, "probes": write_results(cell_rows(agg), out, "probes")[1]}
    tables["settings"] = write_results(settings_rows(agg), out, "settings")[1]
    if diffs:
        tables["comparisons"] = write_results(diffs, out, "comparisons")[1]
    markdown = out / "report.md"
    markdown.write_text(render_markdown(agg, summary, pairs, diffs, figures, out), encoding="utf-8")
    return Report(out, markdown, csv_path, figures, tables, agg, summary)


# ---------------------------------------------------------------------------- figures
#: a by-layer figure draws one curve per group up to this many groups; more groups are drawn
#: per ablation axis only (a legend of 30 settings reads as noise)
MAX_CURVES = 8
#: measures that are proportions: their seed CI bands are clipped to [0, 1]
PROPORTIONS = frozenset(
    {"alignment_acc", "nmi_pooled", "nmi_per_example_mean", "text_share", "content_text_share"}
)


def is_proportion(column: str) -> bool:
    return column.endswith(("_acc", "_f1")) or column in PROPORTIONS or column == "chance"


def _title(task: str, series: str) -> str:
    return f"{task} {series}".strip()


def layer_axis(cells: Sequence[Cell]) -> list[int]:
    """The sorted union of the layers of ``cells`` (models may differ in depth)."""
    return sorted({c.layer for c in cells if c.layer is not None})


def layer_values(
    cells: Sequence[Cell], layers: Sequence[int], column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, CI low and CI high of ``column`` at each layer (NaN where a group lacks it)."""
    at = {c.layer: c.get(column) for c in cells if c.layer is not None}
    mean = np.array([at[i].mean if i in at else np.nan for i in layers])
    low = np.array([at[i].low if i in at else np.nan for i in layers])
    high = np.array([at[i].high if i in at else np.nan for i in layers])
    return mean, low, high


def _chance(cells: Sequence[Cell]) -> float | None:
    values = [c.get("chance").mean for c in cells if math.isfinite(c.get("chance").mean)]
    return float(np.mean(values)) if values else None


def draw_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    controls: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    layers: Sequence[int],
    path: Path,
    title: str,
    metric: str,
    chance: float | None,
) -> Path:
    """Curves with bands through the one by-layer plotter; each group's control task dashed
    in its colour (the gap is the selectivity); bands of proportions clipped to [0, 1]."""
    series: dict[str, np.ndarray] = {}
    bands: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    colour_of: dict[str, str] = {}
    for name, (mean, low, high) in curves.items():
        series[name], bands[name] = mean, (low, high)
        if name in controls:
            control = f"{name}: control task"
            series[control], bands[control] = controls[name][0], controls[name][1:]
            colour_of[control] = name
    return plot_by_layer(
        series,
        [str(i) for i in layers],
        path,
        title,
        ylabel=metric,
        chance=chance,
        bands=bands,
        dashed=list(colour_of),
        colour_of=colour_of,
        xlabel="layer (0 = embeddings)",
        clip=(0.0, 1.0) if is_proportion(metric) else None,
    )


def by_layer_figures(agg: Aggregate, out: Path) -> dict[str, Path]:
    """Per task and series with per-layer probes: one curve per group with its 95% CI band
    over seeds, the control curve when present, and chance (up to ``MAX_CURVES`` groups)."""
    figures = {}
    for task, series in agg.series():
        cells = [c for c in agg.select(task=task, series=series) if c.layer is not None]
        layers = layer_axis(cells)
        groups = [g for g in agg.groups if any(c.group == g for c in cells)]
        if len(layers) < 2 or len(groups) > MAX_CURVES:
            continue
        metric = agg.metrics[task]
        curves, controls = {}, {}
        for group in groups:
            mine = [c for c in cells if c.group == group]
            curves[group.label] = layer_values(mine, layers, metric)
            if any(math.isfinite(c.get("control_test_acc").mean) for c in mine):
                controls[group.label] = layer_values(mine, layers, "control_test_acc")
        key = slug("by_layer", task, series)
        figures[key] = draw_curves(
            curves,
            controls,
            layers,
            out / f"{key}.png",
            f"{_title(task, series)}: {metric} by layer\n(mean, 95% CI over seeds)",
            metric,
            _chance(cells),
        )
    return figures


def axis_values(agg: Aggregate, axis: str) -> list[Any]:
    """The values ``axis`` takes over the groups, smallest (or smallest probe) first."""
    values = list(dict.fromkeys(g.value(axis) for g in agg.groups))
    if axis == PROBE:
        return sorted(values, key=capacity_order)
    return sorted(values, key=lambda v: (v is None, not isinstance(v, int | float), repr(v)))


def axis_figures(agg: Aggregate, out: Path) -> dict[str, Path]:
    """With two or more ablation axes (keys that vary between groups and that no other key
    implies, ``Aggregate.axes``): per axis, task and
    series, one curve per value of the axis, the mean over every setting of the other axes
    with that value, the band their range (min to max)."""
    if len(agg.axes) < 2:
        return {}
    figures = {}
    capacity = varying_capacity([g.value(PROBE) for g in agg.groups if g.value(PROBE)])
    for axis in agg.axes:
        for task, series in agg.series():
            cells = [c for c in agg.select(task=task, series=series) if c.layer is not None]
            layers = layer_axis(cells)
            if len(layers) < 2:
                continue
            metric = agg.metrics[task]
            curves = {}
            for value in axis_values(agg, axis):
                groups = [g for g in agg.groups if g.value(axis) == value]
                means = np.array(
                    [layer_values([c for c in cells if c.group == g], layers, metric)[0]
                     for g in groups]
                )  # fmt: skip
                if not np.isfinite(means).any():
                    continue
                name = probe_label(value, capacity) if axis == PROBE else format_value(value)
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN layers stay NaN
                    settings = f"{len(groups)} setting{'s' if len(groups) > 1 else ''}"
                    curves[f"{name} ({settings})"] = (
                        np.nanmean(means, axis=0),
                        np.nanmin(means, axis=0),
                        np.nanmax(means, axis=0),
                    )
            if len(curves) < 2:
                continue
            key = slug("axis", axis, task, series)
            figures[key] = draw_curves(
                curves,
                {},
                layers,
                out / f"{key}.png",
                f"{_title(task, series)}: {metric} by layer and {axis}\n"
                "(mean over the other settings; band: their range)",
                metric,
                _chance(cells),
            )
    return figures


def head_matrix(cells: Sequence[Cell], column: str) -> np.ndarray:
    """``(layers, heads)`` means of the per-head cells (1-based fields); NaN if absent."""
    heads = [c.head for c in cells if c.head is not None]
    matrix = np.full((max(h[0] for h in heads), max(h[1] for h in heads)), np.nan)
    for c in cells:
        if c.head is not None:
            matrix[c.head[0] - 1, c.head[1] - 1] = c.get(column).mean
    return matrix


def head_figures(agg: Aggregate, out: Path) -> dict[str, Path]:
    """Per task, series and group with per-head probes: the layer x head heatmap of the mean
    over seeds, on one colour scale per series so groups compare by eye; the 5 best heads by
    the selection measure (validation when the rows have it) outlined; chance marked."""
    figures = {}
    for task, series in agg.series():
        cells = [c for c in agg.select(task=task, series=series) if c.head is not None]
        if not cells:
            continue
        metric = agg.metrics[task]
        select = selection_column(metric, {col for c in cells for col in c.stats})
        matrices = {
            g: head_matrix([c for c in cells if c.group == g], metric)
            for g in agg.groups
            if any(c.group == g for c in cells)
        }
        finite = np.concatenate([m[np.isfinite(m)] for m in matrices.values()])
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
        for group, matrix in matrices.items():
            mine = [c for c in cells if c.group == group]
            n = max((c.get(metric).n for c in mine), default=0)
            key = slug("heads", task, series, group.label)
            figures[key] = plot_layer_head_heatmap(
                matrix,
                out / f"{key}.png",
                title=f"{_title(task, series)}: {metric} per head ({n} seeds)\n{group.label}\n"
                f"outlined: the 5 best heads by {select}",
                layer_names=[str(i + 1) for i in range(matrix.shape[0])],
                cbar_label=metric,
                vmin=vmin,
                vmax=vmax,
                annotate_top=5,
                rank_by=head_matrix(mine, select),
                chance=_chance(mine),
            )
    return figures


def _base_key(group: Group, axes: Sequence[str]) -> tuple:
    """The group's key without its probe: the rows' family and capacity, and the ``probe.*``
    config keys that come with them (not those that are axes of their own, ``probe.lr``)."""
    return tuple(
        p for p in group.key if p[0] != PROBE and (p[0] in axes or not p[0].startswith(f"{PROBE}."))
    )


def _size_order(group: Group, cells: Sequence[Cell]) -> tuple:
    """Probes in order of size: mean parameter count when the rows have it, then the
    family-free :func:`capacity_order`."""
    params = [c.get("num_params").mean for c in cells if c.group == group]
    finite = [p for p in params if math.isfinite(p)]
    return (float(np.mean(finite)) if finite else math.inf, *capacity_order(group.value(PROBE)))


def plot_complexity(
    capacities: Sequence[str],
    panels: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    title: str,
    chance: float | None = None,
) -> Path:
    """One panel per measure (accuracy, selectivity), one line per layer over probe
    capacity: accuracy alone rewards big probes, selectivity shows what they memorise.
    ``chance``: a grey dashed line on the first (accuracy) panel."""
    fig = new_figure(max(5.0, 4.2 * len(panels)), 3.8)
    fig.set_layout_engine("constrained")  # panels' axis labels must not overlap
    x = np.arange(len(capacities))
    for i, (ylabel, lines) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), i + 1)
        colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, max(len(lines), 1)))
        for colour, (name, values) in zip(colours, lines.items(), strict=False):
            ax.plot(x, values, marker="o", markersize=3, color=colour, label=name)
        if i == 0 and chance is not None and math.isfinite(chance):
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_xticks(x, list(capacities), rotation=30 if len(x) > 3 else 0, fontsize="small")
        ax.set_xlabel("probe")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if i == len(panels) - 1:
            place_legend(ax)
    fig.suptitle(title, fontsize="medium")
    return save_figure(fig, path)


def complexity_figures(agg: Aggregate, out: Path) -> dict[str, Path]:
    """Where groups differ only in the probe (linear vs MLP, hidden size, rank): the metric
    (and selectivity when present) per layer over probe capacity; one figure per setting of
    the other axes, named by them."""
    figures = {}
    families: dict[tuple, list[Group]] = {}
    for group in agg.groups:
        if group.value(PROBE) is not None:
            families.setdefault(_base_key(group, agg.axes), []).append(group)
    capacity = varying_capacity([g.value(PROBE) for g in agg.groups if g.value(PROBE)])
    for family in families.values():
        if len({g.value(PROBE) for g in family}) < 2:
            continue
        for task, series in agg.series():
            cells = [
                c
                for c in agg.select(task=task, series=series)
                if c.group in family and c.head is None
            ]
            members = sorted({c.group for c in cells}, key=lambda g: _size_order(g, cells))
            if len(members) < 2:
                continue
            metric = agg.metrics[task]
            panels = {metric: _capacity_lines(cells, members, metric)}
            if any(math.isfinite(c.get("selectivity").mean) for c in cells):
                panels["selectivity"] = _capacity_lines(cells, members, "selectivity")
            model = key_label(dict(members[0].key), [a for a in agg.axes if a != PROBE])
            key = slug("complexity", task, series, model)
            figures[key] = plot_complexity(
                [probe_label(g.value(PROBE), capacity) for g in members],
                panels,
                out / f"{key}.png",
                title=f"{_title(task, series)} ({model}): probe complexity",
                chance=_chance(cells) if is_proportion(metric) else None,
            )
    return figures


def _capacity_lines(
    cells: Sequence[Cell], members: Sequence[Group], column: str
) -> dict[str, np.ndarray]:
    by_probe: dict[str, dict[Group, float]] = {}
    for c in sorted(cells, key=lambda c: (c.layer is None, c.layer or 0, c.probe)):
        by_probe.setdefault(c.probe, {})[c.group] = c.get(column).mean
    return {
        probe: np.array([values.get(g, np.nan) for g in members])
        for probe, values in by_probe.items()
    }


# ---------------------------------------------------------------------------- markdown
def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, NaN/None blank."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def mean_ci(mean: float, ci: float) -> str:
    """``0.700 ± 0.248``; the mean alone when there is no spread (one seed)."""
    if not math.isfinite(mean):
        return ""
    return f"{mean:.3f} ± {ci:.3f}" if math.isfinite(ci) else f"{mean:.3f}"


def markdown_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def best_table(summary: Sequence[Mapping[str, Any]], groups: Sequence[Group]) -> str:
    """Task (and series) x group: the best probe's mean ± CI, probe and seeds in brackets."""
    labels = [g.label for g in groups if any(r["group"] == g.label for r in summary)]
    keys = list(dict.fromkeys((r["task"], r["series"]) for r in summary))
    lookup = {(r["task"], r["series"], r["group"]): r for r in summary}
    rows = []
    for task, series in keys:
        line = [task, series]
        for label in labels:
            r = lookup.get((task, series, label))
            line.append(
                f"{mean_ci(r['mean'], r['ci95'])} ({r['best_probe']}, n={r['n_seeds']})"
                if r
                else ""
            )
        rows.append(line)
    return markdown_table(rows, ["task", "series", *labels])


def details_table(summary: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            r["task"],
            r["series"],
            r["group"],
            r["best_probe"],
            r["metric"],
            mean_ci(r["mean"], r["ci95"]),
            r["n_seeds"],
            mean_ci(r["selectivity"], r["selectivity_ci95"]),
            r["mdl_compression"],
            r["mdl_compression_over_prior"],
            r["chance"],
        ]
        for r in summary
    ]
    header = ["task", "series", "group", "best probe", "metric", "mean ± 95% CI", "seeds"]
    mdl = ["MDL compression", "MDL over prior"]
    return markdown_table(rows, [*header, "selectivity", *mdl, "chance"])


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Per layer (and single probes such as ``all_heads``; per-head rows are in the CSV)."""
    shown = [r for r in rows if r["kind"] != "head"]
    lines = [
        [
            r["task"],
            r["series"],
            r["probe"],
            mean_ci(r["a_mean"], r["a_ci95"]),
            mean_ci(r["b_mean"], r["b_ci95"]),
            mean_ci(r["diff"], r["diff_ci95"]),
            {True: "yes", False: "no"}.get(r["excludes_zero"], "n/a"),
        ]
        for r in shown
    ]
    header = ["task", "series", "probe", "A", "B", "A - B (95% CI)", "CI excludes 0"]
    return markdown_table(lines, header)


def runs_table(agg: Aggregate, out: Path) -> str:
    rows = []
    for run in agg.runs:
        group = agg.run_groups.get(run.path)
        label = group.label if group else ""
        rows.append(
            [label, run.task, run.seed, len(run.rows), run.source, _relative(run.path, out)]
        )
    return markdown_table(rows, ["group", "task", "seed", "rows", "source", "folder"])


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve().parent))
    except ValueError:
        return str(path)


def settings_rows(agg: Aggregate) -> list[dict[str, Any]]:
    """Every group with its value of each varying key (full key names), seeds and runs."""
    out = []
    for group in agg.groups:
        cells = [c for c in agg.cells if c.group == group]
        seeds = sorted({repr(s) for c in cells for s in c.seeds})
        row: dict[str, Any] = {"group": group.label}
        for key in agg.varying:
            value = group.value(key)
            row[key] = probe_text(value) if key == PROBE else format_value(value)
        runs = [r for r, g in agg.run_groups.items() if g == group]
        out.append(row | {"n_seeds": len(seeds), "n_runs": len(runs)})
    return out


def probe_text(spec: Any) -> str:
    return probe_label(spec) if spec is not None else ""


def settings_table(agg: Aggregate) -> str:
    rows = settings_rows(agg)
    header = ["group", *agg.varying, "seeds", "runs"]
    return markdown_table([list(r.values()) for r in rows], header)


def seeds_warning(summary: Sequence[Mapping[str, Any]]) -> str | None:
    """One line when a setting has fewer than ``MIN_SEEDS`` seeds (its CI is wide or none)."""
    few = sorted({r["group"] for r in summary if r["n_seeds"] < MIN_SEEDS})
    if not few:
        return None
    least = min(r["n_seeds"] for r in summary)
    return (
        f"warning: {len(few)} setting(s) have fewer than {MIN_SEEDS} seeds (as few as {least}): "
        "their 95% CI is wide (n=2) or missing (n=1); run more seeds (seed=1,2,3) before "
        "reading differences: " + "; ".join(few[:3]) + ("; ..." if len(few) > 3 else "")
    )


def render_markdown(
    agg: Aggregate,
    summary: Sequence[Mapping[str, Any]],
    pairs: Sequence[Comparison],
    diffs: Sequence[Mapping[str, Any]],
    figures: Mapping[str, Path],
    out: Path,
) -> str:
    metrics = ", ".join(f"{t}: {m}" for t, m in agg.metrics.items())
    select = {r["selected_by"] for r in summary}
    parts = [
        "# vlprobe report",
        f"{len(agg.runs)} runs in {len(agg.groups)} groups (runs whose resolved configs are "
        "equal but for the seed and the logging/output/thread keys). Groups differ in: "
        f"{', '.join(f'`{k}`' for k in agg.varying) or 'nothing (one group)'}. "
        f"Metric per task: {metrics}. The best probe of each task and group is picked on the "
        f"mean of {', '.join(sorted(select)) or 'the metric'} over seeds. "
        "± is the 95% confidence half-width over seeds (Student t, n - 1 degrees of freedom); "
        "none is shown for one seed.",
        *([f"**{warning}**"] if (warning := seeds_warning(summary)) else []),
        "## Best probe per task",
        best_table(summary, agg.groups),
        "## Details",
        details_table(summary),
    ]
    for pair in pairs:
        ident = (pair.key, pair.a.label, pair.b.label)
        rows = [r for r in diffs if (r["key"], r["a"], r["b"]) == ident]
        if rows:
            parts += [
                f"## Comparison by {pair.key}: A = {pair.a.label}, B = {pair.b.label}",
                "Difference of means per probe; the CI is Welch's t interval over the two "
                "groups' seeds.",
                comparison_table(rows),
            ]
    parts += ["## Settings", settings_table(agg), "## Runs", runs_table(agg, out)]
    if agg.skipped:
        parts += [
            "## Skipped runs",
            markdown_table(
                [[_relative(s.path, out), s.reason] for s in agg.skipped], ["folder", "reason"]
            ),
        ]
    if figures:
        parts.append("## Figures")
        parts += [f"![{key}]({path.relative_to(out).as_posix()})" for key, path in figures.items()]
    return "\n\n".join(parts) + "\n"


def summary_text(report: Report) -> str:
    """The console summary: the best-probe table and where everything went."""
    groups = report.data.groups if report.data else []
    lines = [best_table(report.summary, groups), ""]
    warning = seeds_warning(report.summary)
    if warning:
        lines += [warning, ""]
    if report.data and report.data.varying:
        lines += [f"groups differ in: {', '.join(report.data.varying)}", ""]
    if report.data and report.data.skipped:
        lines.append(f"skipped {len(report.data.skipped)} run(s):")
        lines += [f"  {s.path}: {s.reason}" for s in report.data.skipped]
        lines.append("")
    lines.append(f"report:  {report.markdown}")
    lines += [f"table:   {p}" for p in report.tables.values()]
    lines.append(f"figures: {len(report.figures)} PNG in {report.out / 'figures'}")
    return "\n".join(lines)
