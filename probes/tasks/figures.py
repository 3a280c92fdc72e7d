"""Figures shared by the trained VALUE tasks (relations, coreference, linguistic probing).

Rows are the engine's result rows, named ``<subtask>/<input>/<probe>``: per-layer embedding
probes (``layer_XX``), one all-heads attention probe and per-head probes (``LxxHyy``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vlprobe.cache.reader import CacheReader
from vlprobe.reporting.figures import draw_errorbars, plot_by_layer, plot_layer_head_heatmap

DPI = 120


def probe_figures(
    rows: list[dict], reader: CacheReader, out_dir: Path, title: str
) -> dict[str, Path]:
    """Per subtask: accuracy by layer (with chance, the all-heads probe and what the run asked
    for: controls, selectivity, the seed CI; see :func:`accuracy_by_layer`), MDL compression by
    layer (``probing.mdl``) and a layer x head heatmap of the per-head probes. ``title`` names
    the task, e.g. ``visual relation``."""
    figures: dict[str, Path] = {}
    by_name: dict[str, list[dict]] = {}
    for row in rows:
        by_name.setdefault(row["name"].rsplit("/", 1)[0], []).append(row)
    for subtask in dict.fromkeys(key.split("/")[0] for key in by_name):
        layer_rows = by_name.get(f"{subtask}/embedding", [])
        if layer_rows:
            series, bands, errorbars = accuracy_by_layer(layer_rows)
            if f"{subtask}/attention" in by_name:
                value = by_name[f"{subtask}/attention"][0]["test_acc"]
                series["test acc (attention probe, all heads)"] = [value] * len(layer_rows)
            names = [reader.layer_names[int(r["probe"].split("_")[1])] for r in layer_rows]
            spread = "band: Wilson 95% over test examples"
            spread += ", bars: 95% CI over seeds" if errorbars else ""
            figures[f"{subtask}_by_layer"] = plot_by_layer(
                series,
                names,
                out_dir / f"{subtask}_by_layer.png",
                title=f"{title} {subtask}: accuracy by layer ({spread})",
                chance=layer_rows[0]["chance"],
                bands=bands,
                errorbars=errorbars,
            )
            mdl = mdl_by_layer(layer_rows)
            if mdl:
                figures[f"{subtask}_mdl"] = plot_by_layer(
                    mdl,
                    names,
                    out_dir / f"{subtask}_mdl.png",
                    title=f"{title} {subtask}: MDL (online code) by layer",
                    ylabel=MDL_YLABEL,
                )
        head_rows = by_name.get(f"{subtask}/head", [])
        if head_rows:
            matrix = np.array([r["test_acc"] for r in head_rows], dtype=np.float64).reshape(
                reader.num_layers, reader.num_heads
            )
            figures[f"{subtask}_heads"] = plot_layer_head_heatmap(
                matrix,
                out_dir / f"{subtask}_heads.png",
                title=f"{title} {subtask}: per-head probe test accuracy",
                layer_names=reader.layer_names[1:],
                annotate_top=5,
            )
    return figures


TEST = "test acc (embedding probe)"
MDL_YLABEL = "compression (uniform / online code)"


def accuracy_by_layer(
    rows: Sequence[Mapping],
) -> tuple[dict[str, list[float]], dict[str, tuple], dict[str, tuple]]:
    """What the accuracy-by-layer figure draws for per-layer rows: ``(series, bands,
    errorbars)``. Test and val accuracy with the test-set interval, and whatever the run asked
    for: the seed mean with its 95% CI over seeds, control-task accuracy with selectivity
    (Hewitt and Liang 2019), shuffled-label accuracy."""
    series = {
        TEST: _column(rows, "test_acc"),
        "val acc (embedding probe)": _column(rows, "val_acc"),
    }
    bands: dict[str, tuple] = {TEST: test_band(rows)}
    errorbars: dict[str, tuple] = {}
    if "test_acc_ci95" in rows[0]:
        mean, half = np.array(series.pop(TEST)), np.array(_column(rows, "test_acc_ci95"))
        name = f"{TEST}, mean of {len(rows[0]['seeds'])} seeds"
        series = {name: mean.tolist(), **series}
        bands = {name: bands[TEST]}
        errorbars[name] = ((mean - half).tolist(), (mean + half).tolist())
    if "control_test_acc" in rows[0]:
        series["control task test acc"] = _column(rows, "control_test_acc")
        series["selectivity (test - control)"] = _column(rows, "selectivity")
    if "shuffled_test_acc" in rows[0]:
        series["shuffled labels test acc"] = _column(rows, "shuffled_test_acc")
    return series, bands, errorbars


def mdl_by_layer(rows: Sequence[Mapping]) -> dict[str, list[float]]:
    """The MDL figure's series (empty without ``probing.mdl``): compression by layer."""
    if "mdl_compression" not in rows[0]:
        return {}
    return {"compression (embedding probe)": _column(rows, "mdl_compression")}


def _column(rows: Sequence[Mapping], key: str) -> list[float]:
    return [np.nan if r.get(key) is None else float(r[key]) for r in rows]


def test_band(rows: Sequence[Mapping]) -> tuple[list[float], list[float]]:
    """(low, high) of each row's test-set interval (``test_acc_low`` / ``_high``; NaN if none)."""
    low = [float(r.get("test_acc_low", np.nan)) for r in rows]
    return low, [float(r.get("test_acc_high", np.nan)) for r in rows]


def plot_curves_by_layer(
    series: Mapping[str, Sequence[float]],
    dashed: Sequence[str],
    layer_names: Sequence[str],
    path: Path,
    title: str,
    chance: float | None = None,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    errorbars: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    ylabel: str = "test accuracy",
) -> Path:
    """Accuracy by layer; ``dashed`` series (e.g. a baseline's) are drawn thin and dashed over
    the others, so a baseline identical to the model stays visible; ``bands[name]`` shades
    ``(low, high)`` (the test-set interval) in the series' colour, ``errorbars[name]`` draws
    another spread (the seeds' CI) as bars."""
    x = np.arange(len(layer_names))
    fig = _figure(max(5.0, 0.45 * len(x) + 2.0), 3.6)
    ax = fig.add_subplot()
    for name, values in series.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != x.shape:
            raise ValueError(f"series {name!r} has {values.size} values for {x.size} layers")
        style = (
            {"linestyle": "--", "linewidth": 1.2, "marker": "s", "markersize": 3, "zorder": 3}
            if name in dashed
            else {"linewidth": 2.5, "alpha": 0.7, "marker": "o", "markersize": 4}
        )
        (line,) = ax.plot(x, values, label=name, **style)
        if bands and name in bands:
            low, high = (np.asarray(b, dtype=np.float64) for b in bands[name])
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        if errorbars and name in errorbars:
            draw_errorbars(ax, x, values, errorbars[name], line.get_color())
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(x, list(layer_names), rotation=45 if len(x) > 8 else 0)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_task_layer_heatmap(
    matrix: np.ndarray,
    task_names: Sequence[str],
    layer_names: Sequence[str],
    path: Path,
    title: str,
) -> Path:
    """A ``(tasks, layers)`` accuracy matrix, every cell labelled (tasks differ in chance)."""
    mat = np.asarray(matrix, dtype=np.float64)
    if mat.shape != (len(task_names), len(layer_names)):
        raise ValueError(f"matrix {mat.shape} for {len(task_names)} x {len(layer_names)} names")
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    fig = _figure(max(4.0, 0.6 * mat.shape[1] + 3.0), 0.4 * mat.shape[0] + 1.6)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, label="test accuracy")
    ax.set_xticks(np.arange(mat.shape[1]), list(layer_names))
    ax.set_yticks(np.arange(mat.shape[0]), list(task_names))
    ax.set_xlabel("layer")
    ax.set_title(title)
    for (i, j), value in np.ndenumerate(mat):
        if np.isfinite(value):
            ink = "black" if value > 0.6 else "white"  # viridis is light at the top
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=ink)
    return _save(fig, path)


def _figure(width: float, height: float) -> Figure:
    """A bare Agg figure, never registered with pyplot (see vlprobe.reporting.figures)."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    fig.clear()
    return path
