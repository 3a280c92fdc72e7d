"""One W&B run a dashboard can use, built from a run's final result rows.

A run probes hundreds of layers and heads; one history key per probe floods a workspace with
one-dot panels. Here the rows become, per subtask, one table (every row's identity fields and
metrics), native charts with the layer on the x-axis (accuracy with its interval and chance,
selectivity, MDL compression), a layer x head heatmap, and a few summary numbers a sweep can
optimise. The number of keys grows with subtasks and probe kinds, never with probes: per
subtask a table and a heatmap, per subtask and probe kind (and stream) up to three charts and
four by-layer history keys.

Rows are read by their typed identity fields (``subtask``, ``kind``, ``layer``, ``head``,
``stream``, ``family``, ``capacity``), never by parsing probe names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

#: what a row is; the first columns of every table
IDENTITY = ("task", "subtask", "kind", "layer", "head", "stream", "family", "capacity")

#: the lines of the accuracy-by-layer chart (when the rows hold them)
LAYER_METRICS = ("test_acc", "test_acc_low", "test_acc_high", "val_acc", "chance")
#: charted by layer too, each its own chart
EXTRA_LAYER_METRICS = ("selectivity", "mdl_compression")
#: reference lines drawn in a metric's chart: MDL's beside the label prior's compression
REFERENCE_LINES = {"mdl_compression": ("mdl_prior_compression",)}
#: also history keys with the x-axis ``layer`` (line plots a workspace can overlay across runs,
#: chance their reference); the rest stay in the charts' tables, so keys per subtask and series
#: are at most 4
HISTORY_METRICS = ("test_acc", "chance", *EXTRA_LAYER_METRICS)

#: the step metric of every per-layer history key
LAYER_STEP = "layer"


def subtask_of(row: dict[str, Any]) -> str:
    return str(row.get("subtask") or row.get("task") or "all")


def series_of(row: dict[str, Any]) -> str:
    """``<stream>/<kind>`` (or ``<kind>``): one line of a by-layer chart."""
    kind = str(row.get("kind") or "probe")
    return f"{row['stream']}/{kind}" if row.get("stream") else kind


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def by_subtask(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(subtask_of(row), []).append(row)
    return grouped


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Identity fields first, then every other column in first-seen order."""
    seen = list(dict.fromkeys(k for row in rows for k in row))
    return [k for k in IDENTITY if k in seen] + [k for k in seen if k not in IDENTITY]


def table_cell(value: Any) -> Any:
    """A W&B table cell: non-finite floats empty, dicts and lists as JSON text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    return value


def layer_rows(rows: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """``series -> layer -> row`` for the rows that read a whole layer (``head`` is None)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        if row.get("head") is None and isinstance(row.get("layer"), int):
            out.setdefault(series_of(row), {})[row["layer"]] = row
    return {s: dict(sorted(by_layer.items())) for s, by_layer in out.items()}


def layer_history(subtask: str, rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """``layer -> {by_layer/<subtask>/<series>/<metric>: value}``, finite values only."""
    history: dict[int, dict[str, float]] = {}
    for series, by_layer in layer_rows(rows).items():
        for layer, row in by_layer.items():
            for metric in HISTORY_METRICS:
                value = _number(row.get(metric))
                if value is not None:
                    key = f"by_layer/{subtask}/{series}/{metric}"
                    history.setdefault(layer, {})[key] = value
    return dict(sorted(history.items()))


def head_grid(rows: list[dict[str, Any]], metric: str) -> tuple[np.ndarray, list[int]] | None:
    """``(layers x heads array of metric, layers)`` over the rows that read one head (NaN where
    none), or None without head rows. Heads are 1-based (``ProbeId``): column ``h - 1`` is head
    ``h``. Several streams: the first stream's heads."""
    heads = [r for r in rows if isinstance(r.get("head"), int) and isinstance(r.get("layer"), int)]
    if not heads:
        return None
    stream = heads[0].get("stream")
    heads = [r for r in heads if r.get("stream") == stream]
    layers = sorted({r["layer"] for r in heads})
    grid = np.full((len(layers), max(r["head"] for r in heads)), np.nan)
    for r in heads:
        value = _number(r.get(metric))
        grid[layers.index(r["layer"]), r["head"] - 1] = np.nan if value is None else value
    return grid, layers


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the highest validation accuracy (ties: the first), or None."""
    scored = [r for r in rows if _number(r.get("val_acc")) is not None]
    return max(scored, key=lambda r: r["val_acc"]) if scored else None


def describe(row: dict[str, Any]) -> str:
    """``head L3 H5`` / ``embedding L2`` (``stream:`` first when there is one); a row without
    a layer (a measured unit, not a layer's probe) by its name."""
    if row.get("layer") is None:
        return str(row.get("name") or row.get("kind") or "probe")
    text = f"{row.get('kind') or 'probe'} L{row['layer']}"
    if row.get("head") is not None:
        text += f" H{row['head']}"
    return f"{row['stream']}: {text}" if row.get("stream") else text


def summary_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per subtask, the probe chosen on validation: ``summary/<subtask>/best_val_acc`` (what a
    sweep optimises), its ``test_acc``, ``chance`` and which probe it is."""
    summary: dict[str, Any] = {}
    for subtask, group in by_subtask(rows).items():
        best = best_row(group)
        if best is None:
            continue
        prefix = f"summary/{subtask}"
        summary[f"{prefix}/best_val_acc"] = float(best["val_acc"])
        for metric in ("test_acc", "chance"):
            if _number(best.get(metric)) is not None:
                summary[f"{prefix}/{metric}"] = float(best[metric])
        summary[f"{prefix}/best_probe"] = describe(best)
    return summary


def draw_head_heatmap(subtask: str, rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Test accuracy per layer and head on the rows' own range (a [0, 1] scale paints 72
    heads within 0.1 of each other one colour); the 5 heads best on validation outlined and
    labelled (chosen on validation, never on test); chance marked on the colour bar. None
    without head rows."""
    from vlprobe.reporting.figures import plot_layer_head_heatmap

    test = head_grid(rows, "test_acc")
    val = head_grid(rows, "val_acc")
    if test is None or val is None:
        return None
    grid, layers = test
    chances = [c for r in rows if r.get("head") is not None if (c := _number(r.get("chance")))]
    return plot_layer_head_heatmap(
        grid,
        path,
        f"{subtask}: test accuracy per head\n(outlined: the 5 best heads by validation accuracy)",
        layer_names=[str(layer) for layer in layers],
        cbar_label="test accuracy",
        annotate_top=5,
        rank_by=val[0],
        chance=float(np.mean(chances)) if chances else None,
    )


def publish_rows(experiment: Any, rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Log the rows to a W&B run as tables, by-layer charts and history, head heatmaps and
    summary numbers; returns the heatmap PNGs it drew (under ``out_dir``)."""
    import wandb

    drawn: list[Path] = []
    logged: dict[str, Any] = {}
    experiment.define_metric(LAYER_STEP, hidden=True)
    # every row in one table too: what `vlprobe report` reads back from an orphan W&B run
    columns = table_columns(rows)
    logged["results"] = wandb.Table(
        columns=columns, data=[[table_cell(row.get(c)) for c in columns] for row in rows]
    )
    for subtask, group in by_subtask(rows).items():
        columns = table_columns(group)
        data = [[table_cell(row.get(c)) for c in columns] for row in group]
        logged[f"tables/{subtask}"] = wandb.Table(columns=columns, data=data)
        for series, by_layer in layer_rows(group).items():
            logged.update(_layer_charts(subtask, series, by_layer))
        heatmap = draw_head_heatmap(subtask, group, out_dir / f"heads_{_file_part(subtask)}.png")
        if heatmap is not None:
            logged[f"heads/{subtask}"] = wandb.Image(str(heatmap))
            drawn.append(heatmap)
    experiment.log(logged)
    history: dict[int, dict[str, float]] = {}
    for subtask, group in by_subtask(rows).items():
        for layer, values in layer_history(subtask, group).items():
            history.setdefault(layer, {}).update(values)
    for key in sorted({k for values in history.values() for k in values}):
        experiment.define_metric(key, step_metric=LAYER_STEP)
    for layer, values in sorted(history.items()):
        experiment.log({LAYER_STEP: layer, **values})
    experiment.summary.update(summary_metrics(rows))
    return drawn


def publish_run(
    experiment: Any,
    output: Any,
    out_dir: Path,
    readers: dict[str, dict[str, Any]],
    images: Path | None = None,
) -> list[Path]:
    """What a run sends to W&B at its end (a task's ``TaskOutput``): the rows
    (:func:`publish_rows`), the chosen heads' attention on a few validation examples, the
    task's figures as images and its summary numbers. Returns every file it drew or logged,
    for the results artifact (:func:`log_results_artifact`, once results.json is written)."""
    import wandb

    heatmaps = publish_rows(experiment, output.rows, out_dir)
    attention = attention_figures(output.rows, readers, images, out_dir)
    if attention:
        experiment.log({"attention": [wandb.Image(str(p), caption=p.stem) for p in attention]})
    experiment.log({f"figures/{k}": wandb.Image(str(p)) for k, p in output.figures.items()})
    experiment.summary.update(output.summary)
    return [*output.figures.values(), *heatmaps, *attention]


def log_results_artifact(
    experiment: Any,
    rows: list[dict[str, Any]],
    readers: dict[str, dict[str, Any]],
    files: list[Path],
) -> None:
    """The artifacts, last: results.json/csv and the figures, and the caches read."""
    from vlprobe.reporting.wandb_artifacts import log_lineage

    task = str(rows[0].get("task") or "run") if rows else "run"
    log_lineage(experiment, readers, files, task, {"rows": len(rows), "task": task})


def chosen_heads(rows: list[dict[str, Any]], top: int = 2) -> list[tuple[int, int]]:
    """Up to ``top`` single-head probes chosen on validation (never on test), as (layer, head):
    each subtask's best first, then each one's second best ... Subtasks are not ranked against
    each other: their accuracies sit on different chance levels (a 30-way head at 0.4 beats a
    binary one at 0.55)."""
    heads = [r for r in rows if isinstance(r.get("head"), int) and isinstance(r.get("layer"), int)]
    heads = [r for r in heads if _number(r.get("val_acc")) is not None]
    ranked = [
        [(r["layer"], r["head"]) for r in sorted(group, key=lambda r: -r["val_acc"])]
        for group in by_subtask(heads).values()
    ]
    turns = (
        lst[i] for i in range(max(map(len, ranked), default=0)) for lst in ranked if i < len(lst)
    )
    return list(dict.fromkeys(turns))[:top]


def attention_figures(
    rows: list[dict[str, Any]],
    readers: dict[str, dict[str, Any]],
    images: Path | None,
    out_dir: Path,
) -> list[Path]:
    """The chosen heads' phrase -> region attention on a few validation examples, drawn when a
    cache the run read holds phrases, regions and their pairs (Flickr30k); else none."""
    from vlprobe.show import validation_figures

    heads = chosen_heads(rows)
    drawn: list[Path] = []
    for by_dataset in readers.values():
        for reader in by_dataset.values():
            if heads and {"phrase", "region", "coref"} <= set(reader.parts):
                drawn += validation_figures(reader, heads, images, out_dir)
    return drawn


def _layer_charts(subtask: str, series: str, by_layer: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Native line charts over the layer (:func:`chart_lines`)."""
    import wandb

    charts: dict[str, Any] = {}
    for name, lines in chart_lines(by_layer).items():
        charts[f"charts/{subtask}/{series}/{name}_by_layer"] = wandb.plot.line_series(
            xs=[[layer for layer, _ in points] for points in lines.values()],
            ys=[[value for _, value in points] for points in lines.values()],
            keys=list(lines),
            title=f"{subtask} {series}: {name} by layer",
            xname="layer",
        )
    return charts


def chart_lines(by_layer: dict[int, dict[str, Any]]) -> dict[str, dict[str, list]]:
    """``chart -> metric -> (layer, value) points``: accuracy with interval and chance;
    selectivity and MDL compression (with the label prior's) when the rows hold them."""
    plots = {
        "acc": LAYER_METRICS,
        **{m: (m, *REFERENCE_LINES.get(m, ())) for m in EXTRA_LAYER_METRICS},
    }
    charts = {}
    for name, metrics in plots.items():
        lines = {m: _points(by_layer, m) for m in metrics}
        lines = {m: points for m, points in lines.items() if points}
        if metrics[0] in lines:  # a chart needs its own metric, not only its references
            charts[name] = lines
    return charts


def _points(by_layer: dict[int, dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    """``(layer, value)`` where the row holds a finite ``metric``."""
    values = ((layer, _number(row.get(metric))) for layer, row in by_layer.items())
    return [(layer, value) for layer, value in values if value is not None]


def _file_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
