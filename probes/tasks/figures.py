"""Figures shared by the trained VALUE tasks (relations, coreference, linguistic probing).

Rows are the engine's result rows; what each probe read is in their fields (``kind``,
``layer``, ``head``: see :mod:`vlprobe.reporting.identity`), never parsed from ``name``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

from vlprobe.cache.reader import CacheReader
from vlprobe.reporting.figures import (
    new_figure,
    plot_by_layer,
    plot_layer_head_heatmap,
    save_figure,
)


def probe_figures(
    rows: list[dict], reader: CacheReader, out_dir: Path, title: str
) -> dict[str, Path]:
    """Per subtask: accuracy by layer (with chance, the all-heads probe and what the run asked
    for: controls, selectivity, the seed CI; see :func:`accuracy_by_layer`), MDL compression by
    layer (``probing.mdl``) and a layer x head heatmap of the per-head probes, the best heads
    (by validation accuracy) outlined. ``title`` names the task, e.g. ``visual relation``."""
    figures: dict[str, Path] = {}
    for subtask in dict.fromkeys(r["subtask"] for r in rows):
        mine = [r for r in rows if r["subtask"] == subtask]
        layer_rows = sorted((r for r in mine if r["kind"] == "layer"), key=lambda r: r["layer"])
        if layer_rows:
            series, bands, errorbars = accuracy_by_layer(layer_rows)
            everything = [r for r in mine if r["kind"] == "all_heads"]
            if everything:
                value = everything[0]["test_acc"]
                series["test acc (attention probe, all heads)"] = [value] * len(layer_rows)
            names = [reader.layer_names[r["layer"]] for r in layer_rows]
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
                clip=(0.0, 1.0),
            )
            mdl = mdl_by_layer(layer_rows)
            if mdl:
                figures[f"{subtask}_mdl"] = plot_by_layer(
                    mdl,
                    names,
                    out_dir / f"{subtask}_mdl.png",
                    title=f"{title} {subtask}: MDL (online code) by layer",
                    ylabel=MDL_YLABEL,
                    dashed=[MDL_PRIOR],
                )
        head_rows = [r for r in mine if r["kind"] == "head"]
        if head_rows:
            test, val = head_matrix(head_rows, "test_acc"), head_matrix(head_rows, "val_acc")
            figures[f"{subtask}_heads"] = plot_layer_head_heatmap(
                test,
                out_dir / f"{subtask}_heads.png",
                title=f"{title} {subtask}: per-head probe test accuracy\n"
                "(outlined: the 5 best heads by validation accuracy)",
                layer_names=reader.layer_names[1 : test.shape[0] + 1],
                cbar_label="test accuracy",
                annotate_top=5,
                rank_by=val,
                chance=head_rows[0].get("chance"),
            )
    return figures


def head_matrix(rows: Sequence[Mapping], column: str) -> np.ndarray:
    """``(layers, heads)`` of ``column`` over per-head rows (1-based ``layer`` and ``head``
    fields); NaN where a head has no row or no value."""
    matrix = np.full((max(r["layer"] for r in rows), max(r["head"] for r in rows)), np.nan)
    for r in rows:
        value = r.get(column)
        matrix[r["layer"] - 1, r["head"] - 1] = np.nan if value is None else float(value)
    return matrix


TEST = "test acc (embedding probe)"
MDL_YLABEL = "compression (uniform / online code)"
#: the MDL figures' reference line: what the labels' frequencies alone compress, no probe
MDL_PRIOR = "label prior alone (no representation)"


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
    """The MDL figure's series (empty without ``probing.mdl``): compression by layer, and the
    label prior's (:func:`mdl_prior_line`)."""
    if "mdl_compression" not in rows[0]:
        return {}
    return {
        "compression (embedding probe)": _column(rows, "mdl_compression"),
        **mdl_prior_line(rows, len(rows)),
    }


def mdl_prior_line(rows: Sequence[Mapping], length: int) -> dict[str, list[float]]:
    """``{MDL_PRIOR: [c] * length}``, ``c`` the compression of the label prior's online code
    (``mdl_prior_compression``, one per label set): a probe below it codes the labels worse than
    their frequencies do. Empty for rows without it."""
    prior = next((r["mdl_prior_compression"] for r in rows if "mdl_prior_compression" in r), None)
    return {} if prior is None else {MDL_PRIOR: [float(prior)] * length}


def _column(rows: Sequence[Mapping], key: str) -> list[float]:
    return [np.nan if r.get(key) is None else float(r[key]) for r in rows]


def test_band(rows: Sequence[Mapping]) -> tuple[list[float], list[float]]:
    """(low, high) of each row's test-set interval (``test_acc_low`` / ``_high``; NaN if none)."""
    low = [float(r.get("test_acc_low", np.nan)) for r in rows]
    return low, [float(r.get("test_acc_high", np.nan)) for r in rows]


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
    fig = new_figure(max(4.0, 0.6 * mat.shape[1] + 3.0), 0.4 * mat.shape[0] + 1.6)
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
    return save_figure(fig, path)
