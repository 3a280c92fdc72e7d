"""VALUE task 5, text-to-text interaction: SentEval probing tasks on text-only input.

Each SentEval task is its own data set (``senteval/<task>``), so this task builds one cache per
(model, SentEval task) itself (``dataset = None``: ``run()`` opens no cache). Per layer, a
probe (``cfg.probe``: linear or MLP) reads one sentence vector: the ``[CLS]`` state or the mean
over the text tokens. The same probes are trained on a baseline model (default: the text-only
MiniLM encoder) for the same report; rows carry ``model`` and ``role`` columns.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from datamodules.sources import LayerRows
from datamodules.views import UnitEmbeddingView, example_texts, layer_probe_names, type_ids
from probes.engine import train_view
from probes.tasks.base import TaskOutput
from probes.tasks.figures import plot_curves_by_layer, plot_task_layer_heatmap, test_band
from vlprobe.cache.leakage import check_no_leakage
from vlprobe.cache.reader import CacheReader
from vlprobe.config import config_dir
from vlprobe.data.senteval import SENTEVAL_TASKS
from vlprobe.extraction.pipeline import ensure_cache

log = logging.getLogger(__name__)

POOLINGS = ("cls", "mean")
ROLES = ("model", "baseline")
COLUMNS = [
    "model",
    "probing_task",
    "pooling",
    "layer",
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
    name: str = "linguistic/all"
    dataset: str | None = None
    tasks: tuple[str, ...] = tuple(SENTEVAL_TASKS)
    pooling: tuple[str, ...] = POOLINGS
    baseline_model: str | None = "text"
    caches: dict[str, dict[str, str]] | None = None  # role -> SentEval task -> cache path

    def __post_init__(self) -> None:
        for key, values, valid in (
            ("task.tasks", self.tasks, tuple(SENTEVAL_TASKS)),
            ("task.pooling", self.pooling, POOLINGS),
            ("task.caches", tuple(self.caches or {}), ROLES),
        ):
            bad = [v for v in values if v not in valid]
            if bad:
                raise ValueError(f"{key}: unknown {bad}; valid choices: {', '.join(valid)}")

    def models(self, cfg: DictConfig) -> list[tuple[str, DictConfig]]:
        """``(role, config)``: the run's model, then the baseline's (its model group swapped)."""
        out = [("model", cfg)]
        if self.baseline_model:
            base = baseline_config(cfg, self.baseline_model)
            if OmegaConf.to_container(base.model, resolve=True) == OmegaConf.to_container(
                cfg.model, resolve=True
            ):
                log.info("baseline %s is the run's model: probed once", self.baseline_model)
            else:
                out.append(("baseline", base))
        return out

    def cache_paths(
        self, cfg: DictConfig, models: list[tuple[str, DictConfig]] | None = None
    ) -> dict[tuple[str, str], Path]:
        """Every (role, SentEval task) cache, from ``caches`` or built now (before training)."""
        given = {role: dict(tasks or {}) for role, tasks in (self.caches or {}).items()}
        models = self.models(cfg) if models is None else models
        missing = [(r, t) for r, _ in models for t in self.tasks if t not in given.get(r, {})]
        if cfg.data.get("cache") and len(missing) > 1:
            raise ValueError(
                f"data.cache names one file, but {self.name} needs {len(missing)} caches "
                f"({', '.join(f'{r}/{t}' for r, t in missing)}): give them as "
                "task.caches={model: {<task>: path}, baseline: {<task>: path}}"
            )
        paths = {}
        for role, run_cfg in models:
            for task in self.tasks:
                path = given.get(role, {}).get(task)
                if path is None:
                    path = ensure_cache(run_cfg, f"senteval/{task}")
                elif not Path(path).exists():
                    raise FileNotFoundError(f"task.caches.{role}.{task}={path} does not exist")
                paths[(role, task)] = Path(path)
        return paths

    def view(self, reader: CacheReader, pooling: str, layers: list[int]) -> UnitEmbeddingView:
        """One row per sentence; one probe per layer on its pooled vector."""
        example = reader.array("units/sentence/example")
        all_texts = example_texts(reader)
        texts = [all_texts[e] for e in example]
        return UnitEmbeddingView(
            reader=reader,
            labels=reader.array("units/sentence/label").astype(np.int64),
            probe_names=layer_probe_names(layers),
            class_names=list(reader.label_names["sentence"]),
            row_split=reader.example_split[example],
            left=LayerRows(reader, f"units/sentence/{pooling}", layers),
            left_index=np.arange(example.size),
            # control type of a sentence: its first word, a lexical type that recurs across
            # splits (the first two words recurred in only 43% of test sentences)
            control_types=type_ids([t.split(" ", 1)[0] for t in texts]),
        )

    def execute(
        self, reader: CacheReader | None, cfg: DictConfig, loggers: list[Any], out_dir: Path
    ) -> TaskOutput:
        models = self.models(cfg)
        paths = self.cache_paths(cfg, models)
        labels = {role: model_label(run_cfg.model) for role, run_cfg in models}
        if labels.get("baseline") == labels["model"]:  # same name, other settings
            labels["baseline"] += "[baseline]"
        rows: list[dict[str, Any]] = []
        for (role, task), path in paths.items():
            cache = CacheReader(path)
            try:
                check_dataset(cache, task)
                check_no_leakage(cache)  # run() checks only the cache it opens: none here
                layers = select_layers(cache, cfg.probe.get("layers"))
                for pooling in self.pooling:
                    prefix = f"{role}/{task}/{pooling}"
                    view = self.view(cache, pooling, layers)
                    for layer, row in zip(
                        layers, train_view(view, cfg, loggers, prefix), strict=True
                    ):
                        rows.append(
                            {
                                "task": "linguistic",
                                "probing_task": task,
                                "model": labels[role],
                                "role": role,
                                "pooling": pooling,
                                "layer": cache.layer_names[layer],
                                "layer_index": layer,
                                **row,
                            }
                        )
            finally:
                cache.close()
        return TaskOutput(
            rows,
            COLUMNS,
            linguistic_figures(rows, self.tasks, out_dir),
            summarise(rows),
            console_rows=console_rows(rows),
        )


def baseline_config(cfg: DictConfig, model: str) -> DictConfig:
    """``cfg`` with its ``model`` group replaced by ``configs/model/<model>.yaml``."""
    path = config_dir() / "model" / f"{model}.yaml"
    if not path.exists():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"task.baseline_model={model!r}: no {path}; choices: {choices}")
    model_cfg = OmegaConf.load(path)
    if "defaults" in model_cfg:
        raise ValueError(f"{path} has a defaults list: not supported as a baseline model")
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.model = model_cfg
    return out


def model_label(model: DictConfig) -> str:
    return f"{model.name}[random-init]" if model.get("random_init") else str(model.name)


def check_dataset(reader: CacheReader, task: str) -> None:
    """Refuse a cache of another data set (e.g. a swapped entry of ``task.caches``)."""
    kind = str(reader.attr("dataset_kind"))
    if kind not in ("senteval", f"senteval/{task}"):
        raise ValueError(f"{reader.path} holds {kind!r}, not senteval/{task}")


def select_layers(reader: CacheReader, layers: Any) -> list[int]:
    """``probe.layers`` restricted to the layers this model has (models may differ in depth)."""
    available = list(range(reader.num_layers + 1))
    if layers is None:
        return available
    chosen = [int(layer) for layer in layers if int(layer) in available]
    if not chosen:
        raise ValueError(f"probe.layers={list(layers)}: {reader.path} has layers 0-{available[-1]}")
    return chosen


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Per model and SentEval task: the test accuracy of the best layer/pooling (by val)."""
    summary: dict[str, Any] = {}
    for key in dict.fromkeys((r["role"], r["probing_task"]) for r in rows):
        group = [r for r in rows if (r["role"], r["probing_task"]) == key]
        best = max(group, key=lambda r: r["val_acc"] or -1.0)
        summary[f"best/{key[0]}/{key[1]}/test_acc"] = best["test_acc"]
        summary[f"best/{key[0]}/{key[1]}/probe"] = f"{best['pooling']}/{best['layer']}"
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
    """Per SentEval task: test accuracy by layer, one curve per model x pooling. Per model x
    pooling: a SentEval task x layer heatmap of test accuracy."""
    figures: dict[str, Path] = {}
    indices = sorted({r["layer_index"] for r in rows})  # layer 0 = embeddings for every model
    column = {layer: i for i, layer in enumerate(indices)}
    deepest = max(rows, key=lambda r: r["layer_index"])["model"]
    names = {r["layer_index"]: r["layer"] for r in rows if r["model"] == deepest}
    layer_names = [names.get(layer, str(layer)) for layer in indices]
    curves = dict.fromkeys((r["model"], r["pooling"]) for r in rows)
    baselines = {r["model"] for r in rows if r["role"] == "baseline"}
    present = [t for t in tasks if any(r["probing_task"] == t for r in rows)]
    for task in present:
        series, bands = {}, {}
        for model, pooling in curves:
            values = [float("nan")] * len(indices)
            curve = [None] * len(indices)
            for r in rows:
                if (r["probing_task"], r["model"], r["pooling"]) == (task, model, pooling):
                    values[column[r["layer_index"]]] = _nan(r["test_acc"])
                    curve[column[r["layer_index"]]] = r
            series[f"{model} ({pooling})"] = values
            bands[f"{model} ({pooling})"] = test_band([r or {} for r in curve])
        chance = next(r["chance"] for r in rows if r["probing_task"] == task)
        figures[f"{task}_by_layer"] = plot_curves_by_layer(
            series,
            [f"{m} ({p})" for m, p in curves if m in baselines],
            layer_names,
            out_dir / f"{task}_by_layer.png",
            title=f"SentEval {task}: test accuracy by layer (bands: Wilson 95%)",
            chance=chance,
            bands=bands,
        )
    for model, pooling in curves:
        matrix = np.full((len(present), len(indices)), np.nan)
        for r in rows:
            if (r["model"], r["pooling"]) == (model, pooling):
                cell = present.index(r["probing_task"]), column[r["layer_index"]]
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
