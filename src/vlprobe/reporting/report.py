"""``vlprobe report``: many runs (seeds, models, baselines, probe sizes) in one paper-style
report: by-layer curves with seed confidence bands, layer x head heatmaps, a task x model
table, group comparisons and probe-complexity curves, as PNG, Markdown and CSV.

The numbers come from :mod:`.aggregate`; this module draws and writes them. Figures use the
Agg canvas of :mod:`.figures` (no display, nothing left registered after saving).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from vlprobe.reporting.aggregate import (
    PROBE_KEYS,
    Aggregate,
    Cell,
    Comparison,
    Group,
    aggregate,
    cell_rows,
    comparison_rows,
    comparisons,
    family_label,
    load_runs,
    probe_label,
    summary_rows,
)
from vlprobe.reporting.figures import new_figure, plot_layer_head_heatmap, save_figure
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
        **head_figures(agg, out / "figures"),
        **complexity_figures(agg, out / "figures"),
    }
    summary = summary_rows(agg)
    diffs = [row for pair in pairs for row in comparison_rows(agg, pair)]
    _, csv_path = write_results(summary, out, "report")
    tables = {"report": csv_path, "probes": write_results(cell_rows(agg), out, "probes")[1]}
    if diffs:
        tables["comparisons"] = write_results(diffs, out, "comparisons")[1]
    markdown = out / "report.md"
    markdown.write_text(render_markdown(agg, summary, pairs, diffs, figures, out), encoding="utf-8")
    return Report(out, markdown, csv_path, figures, tables, agg, summary)


# ---------------------------------------------------------------------------- figures
def slug(*parts: str) -> str:
    """A file-name-safe join of ``parts``."""
    text = "__".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "all"


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


def plot_layer_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    controls: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    layer_names: Sequence[str],
    path: str | Path,
    title: str,
    ylabel: str,
    chance: float | None = None,
) -> Path:
    """One solid line and shaded CI band per group; its control task dotted in the same colour
    (the gap is the selectivity); chance as a grey dashed line."""
    x = np.arange(len(layer_names))
    fig = new_figure(max(5.5, 0.45 * len(x) + 2.5), 3.8)
    ax = fig.add_subplot()
    for name, (mean, low, high) in curves.items():
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=name)
        if np.any(high > low):
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if name in controls:
            c_mean, c_low, c_high = controls[name]
            colour = line.get_color()
            label = f"{name}: control task"
            ax.plot(x, c_mean, ":", marker="x", markersize=3, color=colour, label=label)
            if np.any(c_high > c_low):
                ax.fill_between(x, c_low, c_high, color=colour, alpha=0.1, linewidth=0)
    if chance is not None and math.isfinite(chance):
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, list(layer_names), rotation=45 if len(x) > 12 else 0)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    return save_figure(fig, path)


def _chance(cells: Sequence[Cell]) -> float | None:
    values = [c.get("chance").mean for c in cells if math.isfinite(c.get("chance").mean)]
    return float(np.mean(values)) if values else None


def by_layer_figures(agg: Aggregate, out: Path) -> dict[str, Path]:
    """Per task and series with per-layer probes: one curve per group with its 95% CI band
    over seeds, the control curve when present, and chance."""
    figures = {}
    for task, series in agg.series():
        cells = [c for c in agg.select(task=task, series=series) if c.layer is not None]
        layers = layer_axis(cells)
        if len(layers) < 2:
            continue
        metric = agg.metrics[task]
        curves, controls = {}, {}
        for group in agg.groups:
            mine = [c for c in cells if c.group == group]
            if not mine:
                continue
            curves[group.label] = layer_values(mine, layers, metric)
            if any(math.isfinite(c.get("control_test_acc").mean) for c in mine):
                controls[group.label] = layer_values(mine, layers, "control_test_acc")
        key = slug("by_layer", task, series)
        figures[key] = plot_layer_curves(
            curves,
            controls,
            [str(i) for i in layers],
            out / f"{key}.png",
            title=f"{_title(task, series)}: {metric} by layer (mean, 95% CI over seeds)",
            ylabel=metric,
            chance=_chance(cells),
        )
    return figures


def head_matrix(cells: Sequence[Cell], column: str) -> np.ndarray:
    """``(layers, heads)`` means of the per-head cells (``LxxHyy``, 1-based); NaN if absent."""
    heads = [c for c in cells if c.head is not None]
    n_layers = max(c.head[0] for c in heads)  # type: ignore[index]
    n_heads = max(c.head[1] for c in heads)  # type: ignore[index]
    matrix = np.full((n_layers, n_heads), np.nan)
    for c in heads:
        layer, head = c.head  # type: ignore[misc]
        matrix[layer - 1, head - 1] = c.get(column).mean
    return matrix


def head_figures(agg: Aggregate, out: Path) -> dict[str, Path]:
    """Per task, series and group with per-head probes: the layer x head heatmap of the mean
    over seeds, on one colour scale per series so groups compare by eye."""
    figures = {}
    for task, series in agg.series():
        cells = [c for c in agg.select(task=task, series=series) if c.head is not None]
        if not cells:
            continue
        metric = agg.metrics[task]
        matrices = {
            g: head_matrix([c for c in cells if c.group == g], metric)
            for g in agg.groups
            if any(c.group == g for c in cells)
        }
        finite = np.concatenate([m[np.isfinite(m)] for m in matrices.values()])
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
        for group, matrix in matrices.items():
            n = max((c.get(metric).n for c in cells if c.group == group), default=0)
            key = slug("heads", task, series, group.label)
            figures[key] = plot_layer_head_heatmap(
                matrix,
                out / f"{key}.png",
                title=f"{_title(task, series)}: {metric} per head\n{group.label} ({n} seeds)",
                layer_names=[str(i + 1) for i in range(matrix.shape[0])],
                cbar_label=metric,
                vmin=vmin,
                vmax=vmax,
                annotate_top=5,
            )
    return figures


def _base_key(group: Group) -> tuple:
    return tuple(p for p in group.key if p[0] not in PROBE_KEYS)


def _capacity_order(group: Group, cells: Sequence[Cell]) -> tuple:
    """Probes in order of size: mean parameter count when the rows have it, then linear before
    MLP, then hidden size and rank as numbers (not as text: 64 before 256)."""
    params = [c.get("num_params").mean for c in cells if c.group == group]
    finite = [p for p in params if math.isfinite(p)]
    values = dict(group.key)
    sizes = [values.get(k) for k in ("probe.hidden_dim", "probe.rank")]
    return (
        float(np.mean(finite)) if finite else math.inf,
        family_label(values.get("probe.family.path")) != "linear",
        family_label(values.get("probe.family.path")),
        *(float(v) if isinstance(v, int | float) else math.inf for v in sizes),
    )


def plot_complexity(
    capacities: Sequence[str],
    panels: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    title: str,
) -> Path:
    """One panel per measure (accuracy, selectivity), one line per layer over probe
    capacity: accuracy alone rewards big probes, selectivity shows what they memorise."""
    fig = new_figure(max(5.0, 4.2 * len(panels)), 3.8)
    fig.set_layout_engine("constrained")  # panels' axis labels must not overlap
    x = np.arange(len(capacities))
    for i, (ylabel, lines) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), i + 1)
        colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, max(len(lines), 1)))
        for colour, (name, values) in zip(colours, lines.items(), strict=False):
            ax.plot(x, values, marker="o", markersize=3, color=colour, label=name)
        ax.set_xticks(x, list(capacities), rotation=30 if len(x) > 3 else 0, fontsize="small")
        ax.set_xlabel("probe")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if i == len(panels) - 1:
            ax.legend(fontsize="x-small", title="probe", title_fontsize="x-small")
    fig.suptitle(title, fontsize="medium")
    return save_figure(fig, path)


def complexity_figures(agg: Aggregate, out: Path) -> dict[str, Path]:
    """Where groups differ only in the probe (linear vs MLP, hidden size, rank): the metric
    (and selectivity when present) per layer over probe capacity."""
    figures = {}
    families: dict[tuple, list[Group]] = {}
    for group in agg.groups:
        families.setdefault(_base_key(group), []).append(group)
    for family in families.values():
        if len({probe_label(dict(g.key)) for g in family}) < 2:
            continue
        for task, series in agg.series():
            cells = [
                c
                for c in agg.select(task=task, series=series)
                if c.group in family and c.head is None
            ]
            members = sorted({c.group for c in cells}, key=lambda g: _capacity_order(g, cells))
            if len(members) < 2:
                continue
            metric = agg.metrics[task]
            panels = {metric: _capacity_lines(cells, members, metric)}
            if any(math.isfinite(c.get("selectivity").mean) for c in cells):
                panels["selectivity"] = _capacity_lines(cells, members, "selectivity")
            model = members[0].label.split(" [")[0]
            key = slug("complexity", task, series, model)
            figures[key] = plot_complexity(
                [probe_label(dict(g.key)) for g in members],
                panels,
                out / f"{key}.png",
                title=f"{_title(task, series)} ({model}): probe complexity",
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
            r["chance"],
        ]
        for r in summary
    ]
    header = ["task", "series", "group", "best probe", "metric", "mean ± 95% CI", "seeds"]
    return markdown_table(rows, [*header, "selectivity", "MDL compression", "chance"])


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Per layer (and single probes such as ``all_heads``; per-head rows are in the CSV)."""
    shown = [r for r in rows if not re.match(r"^L\d+H\d+$", r["probe"])]
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
        "equal but for the seed and the logging/output keys). Groups differ in: "
        f"{', '.join(f'`{k}`' for k in agg.varying) or 'nothing (one group)'}. "
        f"Metric per task: {metrics}. The best probe of each task and group is picked on the "
        f"mean of {', '.join(sorted(select)) or 'the metric'} over seeds. "
        "± is the 95% confidence half-width over seeds (Student t, n - 1 degrees of freedom); "
        "none is shown for one seed.",
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
    parts += ["## Runs", runs_table(agg, out)]
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
