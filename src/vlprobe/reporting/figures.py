"""Figures for the VALUE findings, written as PNG files.

Figures are built as bare :class:`matplotlib.figure.Figure` objects on the Agg canvas, never
through pyplot: nothing needs a display, the global backend is left alone, and no figure stays
registered (and in memory) after saving, however many a sweep writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vlprobe.analysis.alignment import top_heads

DPI = 120


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    fig.clear()
    return path


#: legends with more entries than this go beside the axes (saved with bbox_inches="tight")
LEGEND_INSIDE_MAX = 6
SOLID = {"linewidth": 1.8, "marker": "o", "markersize": 3.5}
DASHED = {"linestyle": "--", "linewidth": 1.2, "marker": "s", "markersize": 3, "zorder": 3}


def plot_by_layer(
    series: Mapping[str, Sequence[float]],
    layer_names: Sequence[str],
    path: str | Path,
    title: str,
    ylabel: str = "accuracy",
    chance: float | None = None,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    errorbars: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    dashed: Sequence[str] = (),
    colour_of: Mapping[str, str] | None = None,
    xlabel: str = "layer",
    clip: tuple[float, float] | None = None,
) -> Path:
    """The one by-layer figure (per-run figures and ``vlprobe report``): a line per series.

    ``bands[name] = (low, high)`` shades a spread (a test-set or seed interval) and
    ``errorbars[name] = (low, high)`` draws another as bars, in the series' colour; ``dashed``
    series (a baseline, a control task) are drawn thin and dashed over the others, so one
    identical to another stays visible; ``colour_of[name]`` gives a series the colour of an
    earlier one (a group's control curve); ``clip`` bounds the spreads (``(0, 1)`` for
    accuracies: a seed CI over 2 seeds can reach past them); ``chance`` is a grey dashed line.
    """
    x = np.arange(len(layer_names))
    fig = new_figure(max(5.0, 0.45 * len(layer_names) + 2.0), 3.6)
    ax = fig.add_subplot()
    colours: dict[str, str] = {}
    for name, values in series.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != x.shape:
            raise ValueError(f"series {name!r} has {values.size} values for {x.size} layers")
        style = dict(DASHED if name in dashed else SOLID)
        if colour_of and colour_of.get(name) in colours:
            style["color"] = colours[colour_of[name]]
        # a series lacking some layers (a run that probed [0, 6] beside one that probed
        # [0, 3]) is drawn through the layers it has: a NaN would cut its line into dots
        has = np.isfinite(values)
        (line,) = ax.plot(x[has], values[has], label=name, **style)
        colours[name] = line.get_color()
        if bands and name in bands:
            low, high = _clipped(bands[name], clip)
            alpha = (0.1 if name in dashed else 0.2) / (1 + len(bands) // 4)  # many overlap
            ax.fill_between(
                x[has], low[has], high[has], color=colours[name], alpha=alpha, linewidth=0
            )
        if errorbars and name in errorbars:
            low, high = _clipped(errorbars[name], clip)
            draw_errorbars(ax, x[has], values[has], (low[has], high[has]), colours[name])
    if chance is not None and np.isfinite(chance):
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, list(layer_names), rotation=45 if len(x) > 8 else 0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    place_legend(ax)
    return save_figure(fig, path)


def place_legend(ax: Axes) -> None:
    """Inside the axes when short, else beside them (kept in the PNG by the tight bbox)."""
    handles, _ = ax.get_legend_handles_labels()
    if not handles:
        return
    if len(handles) <= LEGEND_INSIDE_MAX:
        ax.legend(fontsize="x-small")
    else:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _clipped(
    spread: tuple[Sequence[float], Sequence[float]], clip: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    low, high = (np.asarray(b, dtype=np.float64) for b in spread)
    if clip is not None:
        low, high = np.clip(low, *clip), np.clip(high, *clip)
    return low, high


def draw_errorbars(
    ax: Axes, x: np.ndarray, values: np.ndarray, spread: tuple[Sequence[float], ...], color: str
) -> None:
    """Bars from ``spread = (low, high)`` around ``values`` (e.g. a seed CI), in ``color``."""
    low, high = (np.asarray(b, dtype=np.float64) for b in spread)
    yerr = np.clip([values - low, high - values], 0, None)  # a clipped bar never turns round
    ax.errorbar(x, values, yerr=yerr, fmt="none", ecolor=color, capsize=3)


def plot_layer_head_heatmap(
    matrix: np.ndarray,
    path: str | Path,
    title: str,
    layer_names: Sequence[str] | None = None,
    cbar_label: str = "accuracy",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate_top: int = 0,
    rank_by: np.ndarray | None = None,
    chance: float | None = None,
) -> Path:
    """An ``(A, H)`` matrix with layers on the y axis (first layer at the top) and heads on x.

    NaN cells are grey; the ``annotate_top`` best cells by ``rank_by`` (default: the drawn
    values; pass validation accuracy when drawing test accuracy, so the outlined heads are not
    chosen on test data) are outlined and labelled with their drawn value. ``chance`` is
    marked on the colour bar.
    """
    mat = np.asarray(matrix, dtype=np.float64)
    if mat.ndim != 2:
        raise ValueError(f"expected an (A, H) matrix, got {mat.shape}")
    n_layers, n_heads = mat.shape
    names = list(layer_names) if layer_names is not None else [str(i + 1) for i in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers")
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    fig = new_figure(max(4.0, 0.4 * n_heads + 2.0), max(3.0, 0.35 * n_layers + 1.5))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    label, line = cbar_label, None
    if chance is not None and np.isfinite(chance):
        low, high = image.norm.vmin, image.norm.vmax
        line = chance if low is not None and high is not None and low <= chance <= high else None
        label += f" (chance {chance:.2f}{': red line' if line is not None else ', off the scale'})"
    bar = fig.colorbar(image, ax=ax, label=label)
    if line is not None:
        bar.ax.axhline(line, color="red", linewidth=1.5)
    ax.set_xticks(np.arange(n_heads), [str(h + 1) for h in range(n_heads)])
    ax.set_yticks(np.arange(n_layers), names)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title)
    if annotate_top > 0:
        rank = mat if rank_by is None else np.asarray(rank_by, dtype=np.float64)
        if rank.shape != mat.shape:
            raise ValueError(f"rank_by {rank.shape} for a {mat.shape} matrix")
        for layer, head, _ in top_heads(rank, annotate_top):
            value = mat[layer, head]
            ax.add_patch(
                Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5)
            )
            if not np.isfinite(value):
                continue
            r, g, b, _ = cmap(image.norm(value))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"  # luminance
            ax.text(head, layer, f"{value:.2f}", ha="center", va="center", fontsize=6, color=ink)
    return save_figure(fig, path)


def plot_text_vs_image(
    text: Sequence[float],
    image: Sequence[float],
    layer_names: Sequence[str],
    path: str | Path,
    title: str,
) -> Path:
    """Grouped bars per layer: [CLS] attention on text vs on image (e.g. averaged over heads)."""
    text = np.asarray(text, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    x = np.arange(len(layer_names))
    if text.shape != x.shape or image.shape != x.shape:
        raise ValueError("text, image and layer_names must have the same length")
    fig = new_figure(max(5.0, 0.45 * len(x) + 2.0), 3.6)
    ax = fig.add_subplot()
    width = 0.4
    ax.bar(x - width / 2, text, width, label="text")
    ax.bar(x + width / 2, image, width, label="image")
    ax.set_xticks(x, list(layer_names), rotation=45 if len(x) > 8 else 0)
    ax.set_xlabel("layer")
    ax.set_ylabel("[CLS] attention mass")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)
