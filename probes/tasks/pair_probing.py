"""What the two pair tasks (relations, coreference) share: views over a table of unit pairs.

A pair table (``pairs/relation``, ``pairs/coref``) is probed three ways for every subtask:
per-layer ``[left; right]`` unit embeddings, the pair's attention over all heads in both
directions (one probe, after Clark et al. 2019), and each head alone (one probe per head).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.sources import LayerRows, Rows
from datamodules.views import (
    FeatureView,
    PairAttentionView,
    UnitEmbeddingView,
    head_probe_ids,
    layer_probe_ids,
)
from probes.engine import ProbeEngine
from probes.tasks.base import TaskInputs, TaskOutput, select_layers
from probes.tasks.figures import probe_figures
from vlprobe.cache.reader import CacheReader
from vlprobe.reporting.identity import ProbeId

PAIR_INPUTS = ("embedding", "attention", "head")
PROBE_COLUMNS = [
    "name", "val_acc", "test_acc", "test_acc_low", "test_acc_high", "test_f1", "chance",
    "best_epoch", "n_train", "n_test",
]  # fmt: skip


@dataclass
class PairTable:
    """Which units a pair joins, where its attention lives, and each row's split."""

    left: str  # a layer-major unit embedding dataset, e.g. unit_path("phrase", "embedding")
    left_index: np.ndarray
    right: str
    right_index: np.ndarray
    attention: str  # (N, A, H, 2) pair attention dataset
    row_split: np.ndarray


@dataclass
class LabelSet:
    subtask: str
    labels: np.ndarray  # per pair row, -1 = not used
    class_names: list[str]
    control_types: np.ndarray | None = None


def check_choices(key: str, values: tuple[str, ...], valid: tuple[str, ...]) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise ValueError(f"{key}: unknown {bad}; valid choices: {', '.join(valid)}")


class PairProbingTask:
    """Base of the pair tasks: subclasses say which table and which labels."""

    name: str
    dataset: str
    inputs: tuple[str, ...]
    title: str

    def table(self, reader: CacheReader) -> PairTable:
        raise NotImplementedError

    def label_sets(self, reader: CacheReader) -> list[LabelSet]:
        raise NotImplementedError

    def views(self, reader: CacheReader, layers: list[int] | None) -> list[tuple[str, FeatureView]]:
        """(``<subtask>/<input>``, view) for every subtask x input; sources shared by all."""
        layers = select_layers(reader, layers)
        table = self.table(reader)
        left = LayerRows(reader, table.left, layers)
        right = left if table.right == table.left else LayerRows(reader, table.right, layers)
        attention = Rows(reader, table.attention)
        out: list[tuple[str, FeatureView]] = []
        for labels in self.label_sets(reader):
            common = {
                "reader": reader,
                "labels": labels.labels,
                "class_names": labels.class_names,
                "row_split": table.row_split,
                "control_types": labels.control_types,
            }
            for kind in self.inputs:
                if kind == "embedding":
                    ids = layer_probe_ids(layers, reader.stream)
                    view: FeatureView = UnitEmbeddingView(
                        **common,
                        probe_names=[p.name for p in ids],
                        probe_ids=ids,
                        left=left,
                        left_index=table.left_index,
                        right=right,
                        right_index=table.right_index,
                    )
                else:
                    ids = (
                        head_probe_ids(reader.num_layers, reader.num_heads, reader.stream)
                        if kind == "head"
                        else [ProbeId("all_heads", stream=reader.stream)]
                    )
                    view = PairAttentionView(
                        **common,
                        probe_names=[p.name for p in ids],
                        probe_ids=ids,
                        attention=attention,
                        per_head=kind == "head",
                    )
                out.append((f"{labels.subtask}/{kind}", view))
        return out

    def datasets(self) -> list[str]:
        return [self.dataset]

    def execute(self, inputs: TaskInputs, engine: ProbeEngine, out_dir: Path) -> TaskOutput:
        reader = inputs.reader
        rows = []
        for name, view in self.views(reader, engine.probing.layers):
            subtask, kind = name.split("/")
            for row in engine.train_view(view, name):
                rows.append(
                    {"task": self.name, "subtask": subtask, "input": kind, "series": name, **row}
                )
        summary: dict[str, Any] = {}
        for subtask in dict.fromkeys(r["subtask"] for r in rows):
            best = max(
                (r for r in rows if r["subtask"] == subtask), key=lambda r: r["val_acc"] or -1.0
            )
            summary[f"best/{subtask}/test_acc"] = best["test_acc"]
            summary[f"best/{subtask}/probe"] = best["name"]
        figures = probe_figures(rows, reader, out_dir, title=self.title)
        return TaskOutput(rows, PROBE_COLUMNS, figures, summary, console_rows=console_rows(rows))


def console_rows(rows: list[dict], top_heads: int = 5) -> list[dict]:
    """Every layer and all-heads row, but only the best few single heads per subtask."""
    short = [r for r in rows if r["kind"] != "head"]
    for subtask in dict.fromkeys(r["subtask"] for r in rows):
        heads = [r for r in rows if r["subtask"] == subtask and r["kind"] == "head"]
        short += sorted(heads, key=lambda r: -(r["val_acc"] or 0.0))[:top_heads]
    return short
