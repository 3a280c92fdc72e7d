"""VALUE task 5, text-to-text interaction: SentEval probing tasks on text-only input.

Each SentEval task is its own data set (``senteval/<task>``): the task declares them all and
``run()``'s prepare step opens one cache per (model, SentEval task). Per layer, a probe
(``probe=linear|mlp|lowrank``) reads one sentence vector: the ``[CLS]`` state or the mean
over the text tokens. The same probes are trained on a baseline model (default: the text-only
MiniLM encoder) for the same report; rows carry ``model`` and ``role`` columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datamodules.sources import LayerRows
from datamodules.views import UnitEmbeddingView, example_texts, layer_probe_ids, type_ids
from probes.engine import ProbeEngine
from probes.tasks.base import TaskInputs, TaskOutput, select_layers
from probes.tasks.figures import (
    MDL_PRIOR,
    MDL_YLABEL,
    mdl_prior_line,
    plot_task_layer_heatmap,
    test_band,
)
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import unit_path
from vlprobe.data.senteval import SENTEVAL_TASKS
from vlprobe.reporting.figures import plot_by_layer

POOLINGS = ("cls", "mean")
COLUMNS = [
    "model",
    "probing_task",
    "pooling",
    "layer_name",
    "val_acc",
    "test_acc",
    "test_acc_low",
    "test_acc_high",
    "chance",
    "best_epoch",
    "n_train",
    "n_test",
]
MAX_CONSOLE_ROWS = 60


@dataclass
class LinguisticTask:
    mismatched_refusal: ClassVar[str | None] = "SentEval sentences have no image to mismatch"
    reads: ClassVar[tuple[str, ...]] = ("sentence",)  # the cache parts it reads
    modalities: ClassVar[tuple[str, ...]] = ("text",)  # the tokens it reads
    name: str = "linguistic/all"
    tasks: tuple[str, ...] = tuple(SENTEVAL_TASKS)
    pooling: tuple[str, ...] = POOLINGS
    baseline_model: str | None = "text"
    # role (model | baseline) -> SentEval task -> a cache given by path (read by the prepare step)
    caches: dict[str, dict[str, str]] | None = None

    def __post_init__(self) -> None:
        for key, values, valid in (
            ("task.tasks", self.tasks, tuple(SENTEVAL_TASKS)),
            ("task.pooling", self.pooling, POOLINGS),
        ):
            bad = [v for v in values if v not in valid]
            if bad:
                raise ValueError(f"{key}: unknown {bad}; valid choices: {', '.join(valid)}")

    def datasets(self) -> list[str]:
        """One data set per SentEval task (each its own file)."""
        return [f"senteval/{task}" for task in self.tasks]

    def view(self, reader: CacheReader, pooling: str, layers: list[int]) -> UnitEmbeddingView:
        """One row per sentence; one probe per layer on its pooled vector."""
        example = reader.unit("sentence", "example")
        all_texts = example_texts(reader)
        texts = [all_texts[e] for e in example]
        ids = layer_probe_ids(layers, reader.stream)
        return UnitEmbeddingView(
            reader=reader,
            labels=reader.unit("sentence", "label").astype(np.int64),
            probe_names=[p.name for p in ids],
            probe_ids=ids,
            class_names=list(reader.label_names["sentence"]),
            row_split=reader.example_split[example],
            left=LayerRows(reader, unit_path("sentence", pooling), layers),
            left_index=np.arange(example.size),
            # control type of a sentence: its first word, a lexical type that recurs across
            # splits (the first two words recurred in only 43% of test sentences)
            control_types=type_ids([t.split(" ", 1)[0] for t in texts]),
        )

    def execute(self, inputs: TaskInputs, engine: ProbeEngine, out_dir: Path) -> TaskOutput:
        rows: list[dict[str, Any]] = []
        for role, by_dataset in inputs.readers.items():
            for dataset, cache in by_dataset.items():
                task = dataset.split("/", 1)[1]
                check_dataset(cache, task)
                layers = select_layers(cache, engine.probing.layers)
                for pooling in self.pooling:
                    prefix = f"{role}/{task}/{pooling}"
                    view = self.view(cache, pooling, layers)
                    for layer, row in zip(layers, engine.train_view(view, prefix), strict=True):
                        rows.append(
                            {
                                "task": "linguistic",
                                "probing_task": task,
                                "model": inputs.labels[role],
                                "role": role,
                                "pooling": pooling,
                                "series": f"{task}/{pooling}",
                                "layer_name": cache.layer_names[layer],
                                **row,
                            }
                        )
        return TaskOutput(
            rows,
            COLUMNS,
            linguistic_figures(rows, self.tasks, out_dir),
            summarise(rows),
            console_rows=console_rows(rows),
        )


def check_dataset(reader: CacheReader, task: str) -> None:
    """Refuse a cache of another data set (e.g. a swapped entry of ``task.caches``)."""
    kind = str(reader.attr("dataset_kind"))
    if kind not in ("senteval", f"senteval/{task}"):
        raise ValueError(f"{reader.path} holds {kind!r}, not senteval/{task}")


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Per model and SentEval task: the test accuracy of the best layer/pooling (by val)."""
    summary: dict[str, Any] = {}
    for key in dict.fromkeys((r["role"], r["probing_task"]) for r in rows):
        group = [r for r in rows if (r["role"], r["probing_task"]) == key]
        best = max(group, key=lambda r: r["val_acc"] or -1.0)
        summary[f"best/{key[0]}/{key[1]}/test_acc"] = best["test_acc"]
        summary[f"best/{key[0]}/{key[1]}/probe"] = f"{best['pooling']}/{best['layer_name']}"
    return summary


def console_rows(rows: list[dict]) -> list[dict]:
    """Every row of a small run; else the best layer (by val) per model, task and pooling."""
    if len(rows) <= MAX_CONSOLE_ROWS:
        return rows
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["role"], r["probing_task"], r["pooling"]), []).append(r)
    return [max(g, key=lambda r: r["val_acc"] or -1.0) for g in groups.values()]


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def linguistic_figures(rows: list[dict], tasks: tuple[str, ...], out_dir: Path) -> dict[str, Path]:
    """Per SentEval task: test accuracy by layer, one curve per model x pooling (with the
    control task's curve, dashed, and the seeds' 95% CI as error bars when asked for), and MDL
    compression by layer with ``probing.mdl``. Per model x pooling: a SentEval task x layer
    heatmap of test accuracy."""
    figures: dict[str, Path] = {}
    indices = sorted({r["layer"] for r in rows})  # layer 0 = embeddings for every model
    column = {layer: i for i, layer in enumerate(indices)}
    deepest = max(rows, key=lambda r: r["layer"])["model"]
    names = {r["layer"]: r["layer_name"] for r in rows if r["model"] == deepest}
    layer_names = [names.get(layer, str(layer)) for layer in indices]
    curves = dict.fromkeys((r["model"], r["pooling"]) for r in rows)
    baselines = {r["model"] for r in rows if r["role"] == "baseline"}
    present = [t for t in tasks if any(r["probing_task"] == t for r in rows)]
    for task in present:
        series, bands, errorbars, mdl = {}, {}, {}, {}
        dashed = [f"{m} ({p})" for m, p in curves if m in baselines]
        for model, pooling in curves:
            curve: list[dict] = [{} for _ in indices]
            for r in rows:
                if (r["probing_task"], r["model"], r["pooling"]) == (task, model, pooling):
                    curve[column[r["layer"]]] = r
            label = f"{model} ({pooling})"
            series[label] = [_nan(r.get("test_acc")) for r in curve]
            bands[label] = test_band(curve)
            if any("test_acc_ci95" in r for r in curve):
                mean = np.array(series[label])
                half = np.array([_nan(r.get("test_acc_ci95")) for r in curve])
                errorbars[label] = (mean - half, mean + half)
            if any("control_test_acc" in r for r in curve):
                series[f"{label}: control task"] = [_nan(r.get("control_test_acc")) for r in curve]
                dashed.append(f"{label}: control task")
            if any("mdl_compression" in r for r in curve):
                mdl[label] = [_nan(r.get("mdl_compression")) for r in curve]
        chance = next(r["chance"] for r in rows if r["probing_task"] == task)
        spread = "bands: Wilson 95%" + (", bars: 95% CI over seeds" if errorbars else "")
        figures[f"{task}_by_layer"] = plot_by_layer(
            series,
            layer_names,
            out_dir / f"{task}_by_layer.png",
            title=f"SentEval {task}: test accuracy by layer ({spread})",
            ylabel="test accuracy",
            chance=chance,
            bands=bands,
            errorbars=errorbars,
            dashed=dashed,
            clip=(0.0, 1.0),
        )
        if mdl:
            mine = [r for r in rows if r["probing_task"] == task]
            figures[f"{task}_mdl"] = plot_by_layer(
                {**mdl, **mdl_prior_line(mine, len(indices))},
                layer_names,
                out_dir / f"{task}_mdl.png",
                title=f"SentEval {task}: MDL (online code) by layer",
                ylabel=MDL_YLABEL,
                dashed=[MDL_PRIOR],
            )
    for model, pooling in curves:
        matrix = np.full((len(present), len(indices)), np.nan)
        for r in rows:
            if (r["model"], r["pooling"]) == (model, pooling):
                cell = present.index(r["probing_task"]), column[r["layer"]]
                matrix[cell] = _nan(r["test_acc"])
        key = re.sub(r"[^\w.-]+", "-", f"heatmap_{model}").strip("-") + f"_{pooling}"
        figures[key] = plot_task_layer_heatmap(
            matrix,
            present,
            layer_names,
            out_dir / f"{key}.png",
            title=f"{model}, {pooling} pooling: SentEval test accuracy",
        )
    return figures
