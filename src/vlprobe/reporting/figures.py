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


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    fig.clear()
    return path


def plot_by_layer(
    series: Mapping[str, Sequence[float]],
    layer_names: Sequence[str],
    path: str | Path,
    title: str,
    ylabel: str = "accuracy",
    chance: float | None = None,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    errorbars: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Path:
    """One line per series over layers; ``bands[name] = (low, high)`` shades a spread (e.g. the
    test-set interval) and ``errorbars[name] = (low, high)`` draws another (e.g. a seed CI) in
    the series' colour; ``chance`` draws a dashed horizontal line."""
    x = np.arange(len(layer_names))
    fig = _new_figure(max(5.0, 0.45 * len(layer_names) + 2.0), 3.6)
    ax = fig.add_subplot()
    for name, values in series.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != x.shape:
            raise ValueError(f"series {name!r} has {values.size} values for {x.size} layers")
        (line,) = ax.plot(x, values, marker="o", markersize=3, label=name)
        if bands and name in bands:
            low, high = (np.asarray(b, dtype=np.float64) for b in bands[name])
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if errorbars and name in errorbars:
            draw_errorbars(ax, x, values, errorbars[name], line.get_color())
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, list(layer_names), rotation=45 if len(x) > 8 else 0)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series or chance is not None:
        ax.legend(fontsize="small")
    return _save(fig, path)


def draw_errorbars(
    ax: Axes, x: np.ndarray, values: np.ndarray, spread: tuple[Sequence[float], ...], color: str
) -> None:
    """Bars from ``spread = (low, high)`` around ``values`` (e.g. a seed CI), in ``color``."""
    low, high = (np.asarray(b, dtype=np.float64) for b in spread)
    ax.errorbar(x, values, yerr=[values - low, high - values], fmt="none", ecolor=color, capsize=3)


def plot_layer_head_heatmap(
    matrix: np.ndarray,
    path: str | Path,
    title: str,
    layer_names: Sequence[str] | None = None,
    cbar_label: str = "accuracy",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate_top: int = 0,
) -> Path:
    """An ``(A, H)`` matrix with layers on the y axis (first layer at the top) and heads on x.

    NaN cells are grey; the ``annotate_top`` best cells are outlined and labelled with their
    value.
    """
    mat = np.asarray(matrix, dtype=np.float64)
    if mat.ndim != 2:
        raise ValueError(f"expected an (A, H) matrix, got {mat.shape}")
    n_layers, n_heads = mat.shape
    names = list(layer_names) if layer_names is not None else [str(i + 1) for i in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers")
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    fig = _new_figure(max(4.0, 0.4 * n_heads + 2.0), max(3.0, 0.35 * n_layers + 1.5))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    fig.colorbar(image, ax=ax, label=cbar_label)
    ax.set_xticks(np.arange(n_heads), [str(h + 1) for h in range(n_heads)])
    ax.set_yticks(np.arange(n_layers), names)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title)
    if annotate_top > 0:
        for layer, head, value in top_heads(mat, annotate_top):
            ax.add_patch(
                Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5)
            )
            r, g, b, _ = cmap(image.norm(value))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"  # luminance
            ax.text(head, layer, f"{value:.2f}", ha="center", va="center", fontsize=6, color=ink)
    return _save(fig, path)


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
    fig = _new_figure(max(5.0, 0.45 * len(x) + 2.0), 3.6)
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
    return _save(fig, path)
