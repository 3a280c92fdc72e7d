"""VALUE task 4, image-to-image interaction: relations between two regions (Visual Genome).

Identification: is a region pair related (annotated) or not (sampled, balanced; chance 50%)?
Classification: which of the K most frequent normalised predicates relates the pair?
Inputs: per-layer region embeddings ``[subject; object]``, the pair's attention over all heads
in both directions (one probe), or each head alone (one probe per head, ranking the heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from datamodules.sources import LayerRows, Rows
from datamodules.views import (
    FeatureView,
    PairAttentionView,
    UnitEmbeddingView,
    head_probe_names,
    layer_probe_names,
)
from probes.engine import train_view
from probes.tasks.base import TaskOutput
from probes.tasks.figures import probe_figures
from vlprobe.cache.reader import CacheReader

COLUMNS = ["name", "val_acc", "test_acc", "test_f1", "chance", "best_epoch", "n_train", "n_test"]

SUBTASKS = ("identification", "classification")
INPUTS = ("embedding", "attention", "head")


@dataclass
class VisualRelationTask:
    name: str = "visual_relation"
    dataset: str = "visual_genome"
    subtasks: tuple[str, ...] = SUBTASKS
    inputs: tuple[str, ...] = INPUTS
    num_predicates: int = 30

    def __post_init__(self) -> None:
        _check_choices("task.subtasks", self.subtasks, SUBTASKS)
        _check_choices("task.inputs", self.inputs, INPUTS)

    def labels(self, reader: CacheReader, subtask: str) -> tuple[np.ndarray, list[str]]:
        related = reader.array("pairs/relation/related").astype(np.int64)
        if subtask == "identification":
            return related, ["unrelated", "related"]
        predicate = reader.array("pairs/relation/predicate").astype(np.int64)
        names = reader.label_names["predicate"][: self.num_predicates]
        keep = (related == 1) & (predicate >= 0) & (predicate < len(names))
        return np.where(keep, predicate, -1), names

    def views(self, reader: CacheReader, layers: list[int] | None) -> list[tuple[str, FeatureView]]:
        """(name, view) for every selected subtask x input."""
        layers = list(range(reader.num_layers + 1)) if layers is None else list(layers)
        subject = reader.array("pairs/relation/subject")
        obj = reader.array("pairs/relation/object")
        region_example = reader.array("units/region/example")
        row_split = reader.example_split[region_example[subject]]
        category = reader.array("units/region/category").astype(np.int64)
        # control type of a pair: its (subject category, object category)
        pair_type = category[subject] * (int(category.max(initial=0)) + 1) + category[obj]
        out = []
        for subtask in self.subtasks:
            labels, class_names = self.labels(reader, subtask)
            common = {
                "reader": reader,
                "labels": labels,
                "class_names": class_names,
                "row_split": row_split,
                "control_types": pair_type,
            }
            for kind in self.inputs:
                if kind == "embedding":
                    emb = LayerRows(reader, "units/region/embedding", layers)
                    view: FeatureView = UnitEmbeddingView(
                        **common,
                        probe_names=layer_probe_names(layers),
                        left=emb,
                        left_index=subject,
                        right=emb,
                        right_index=obj,
                    )
                else:
                    view = PairAttentionView(
                        **common,
                        probe_names=(
                            head_probe_names(reader.num_layers, reader.num_heads)
                            if kind == "head"
                            else ["all_heads"]
                        ),
                        attention=Rows(reader, "pairs/relation/attention"),
                        per_head=kind == "head",
                    )
                out.append((f"{subtask}/{kind}", view))
        return out

    def execute(
        self, reader: CacheReader, cfg: DictConfig, loggers: list[Any], out_dir: Path
    ) -> TaskOutput:
        rows = []
        for name, view in self.views(reader, cfg.probe.get("layers")):
            for row in train_view(view, cfg, loggers, name):
                rows.append({"task": self.name, "subtask": name.split("/")[0], **row})
        summary = {}
        for subtask in self.subtasks:
            best = max((r for r in rows if r["subtask"] == subtask), key=lambda r: r["val_acc"])
            summary[f"best/{subtask}/test_acc"] = best["test_acc"]
            summary[f"best/{subtask}/probe"] = best["name"]
        figures = probe_figures(rows, reader, out_dir, title="visual relation")
        return TaskOutput(rows, COLUMNS, figures, summary, console_rows=_console_rows(rows))


def _check_choices(key: str, values: tuple[str, ...], valid: tuple[str, ...]) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise ValueError(f"{key}: unknown {bad}; valid choices: {', '.join(valid)}")


def _console_rows(rows: list[dict], top_heads: int = 5) -> list[dict]:
    """Every layer and all-heads row, but only the best few single heads per subtask."""
    short = [r for r in rows if "/head/" not in r["name"]]
    for subtask in dict.fromkeys(r["subtask"] for r in rows):
        heads = [r for r in rows if r["subtask"] == subtask and "/head/" in r["name"]]
        short += sorted(heads, key=lambda r: -r["val_acc"])[:top_heads]
    return short
