"""VALUE task 3, cross-modal interaction: visual coreference (Flickr30k Entities).

The table is ``pairs/coref``: every (phrase, region) pair of an example; ``corefer`` = the
region is in the phrase's chain.

Type: the coreference type of a (phrase, gold region) pair, one of the 8 visual types
(``notvisual`` phrases have no region, so they are never in the table). The label is the
phrase's first type; with ``multi_label`` each type gets its own binary one-vs-rest probe
(``type_<name>``: does the phrase carry this type?), so phrases with several types count for
each of them.
Identification: does the pair corefer? Matched pairs against mismatched pairs of the same
images, balanced per split by subsampling the larger class with ``sample_seed``.
Inputs: per-layer ``[phrase; region]`` embeddings, the pair's attention over all heads in both
directions (one probe, after Clark et al. 2019), or each head alone (one probe per head).
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
    example_texts,
    head_probe_names,
    layer_probe_names,
    type_ids,
)
from probes.engine import train_view
from probes.tasks.base import TaskOutput
from probes.tasks.figures import probe_figures
from vlprobe.cache.reader import CacheReader
from vlprobe.data.types import FLICKR_TYPES

COLUMNS = ["name", "val_acc", "test_acc", "test_f1", "chance", "best_epoch", "n_train", "n_test"]

SUBTASKS = ("type", "identification")
INPUTS = ("embedding", "attention", "head")


@dataclass
class VisualCoreferenceTask:
    name: str = "visual_coreference"
    dataset: str = "flickr30k"
    subtasks: tuple[str, ...] = SUBTASKS
    inputs: tuple[str, ...] = INPUTS
    multi_label: bool = False
    sample_seed: int = 0

    def __post_init__(self) -> None:
        for key, values, valid in (
            ("task.subtasks", self.subtasks, SUBTASKS),
            ("task.inputs", self.inputs, INPUTS),
        ):
            bad = [v for v in values if v not in valid]
            if bad:
                raise ValueError(f"{key}: unknown {bad}; valid choices: {', '.join(valid)}")

    def label_sets(self, reader: CacheReader) -> list[tuple[str, np.ndarray, list[str]]]:
        """``(subtask, label per pair row or -1, class names)`` for every selected subtask."""
        phrase = reader.array("pairs/coref/phrase")
        corefer = reader.array("pairs/coref/corefer").astype(bool)
        out = []
        for subtask in self.subtasks:
            if subtask == "identification":
                labels = balanced_identification(corefer, pair_split(reader), self.sample_seed)
                out.append((subtask, labels, ["mismatched", "matched"]))
            elif self.multi_label:
                types = reader.array("units/phrase/types")[phrase]  # (N, 8)
                for t, type_name in enumerate(phrase_type_names(reader)):
                    labels = np.where(corefer, types[:, t].astype(np.int64), -1)
                    out.append((f"type_{type_name}", labels, [f"not {type_name}", type_name]))
            else:
                first = reader.array("units/phrase/type").astype(np.int64)[phrase]
                out.append((subtask, np.where(corefer, first, -1), phrase_type_names(reader)))
        return out

    def views(self, reader: CacheReader, layers: list[int] | None) -> list[tuple[str, FeatureView]]:
        """(``<subtask>/<input>``, view) for every selected subtask x input."""
        layers = list(range(reader.num_layers + 1)) if layers is None else list(layers)
        phrase = reader.array("pairs/coref/phrase")
        region = reader.array("pairs/coref/region")
        row_split = pair_split(reader)
        phrase_words = phrase_texts(reader)
        region_category = reader.array("units/region/category").astype(str)
        # control types: the phrase's words (type); its words with the region's category (pairs)
        controls = {
            "type": type_ids(phrase_words[phrase]),
            "identification": type_ids(
                np.char.add(
                    np.char.add(phrase_words[phrase].astype(str), "|"), region_category[region]
                )
            ),
        }
        # shared by every view, so memory mode loads each array once per run
        phrase_emb = LayerRows(reader, "units/phrase/embedding", layers)
        region_emb = LayerRows(reader, "units/region/embedding", layers)
        attention = Rows(reader, "pairs/coref/attention")
        out = []
        for subtask, labels, class_names in self.label_sets(reader):
            common = {
                "reader": reader,
                "labels": labels,
                "class_names": class_names,
                "row_split": row_split,
                "control_types": controls[
                    "identification" if subtask == "identification" else "type"
                ],
            }
            for kind in self.inputs:
                if kind == "embedding":
                    view: FeatureView = UnitEmbeddingView(
                        **common,
                        probe_names=layer_probe_names(layers),
                        left=phrase_emb,
                        left_index=phrase,
                        right=region_emb,
                        right_index=region,
                    )
                else:
                    view = PairAttentionView(
                        **common,
                        probe_names=(
                            head_probe_names(reader.num_layers, reader.num_heads)
                            if kind == "head"
                            else ["all_heads"]
                        ),
                        attention=attention,
                        per_head=kind == "head",
                    )
                out.append((f"{subtask}/{kind}", view))
        return out

    def execute(
        self, reader: CacheReader | None, cfg: DictConfig, loggers: list[Any], out_dir: Path
    ) -> TaskOutput:
        assert reader is not None, "visual_coreference reads the flickr30k cache run() opens"
        rows = []
        for name, view in self.views(reader, cfg.probe.get("layers")):
            subtask, kind = name.split("/")
            for row in train_view(view, cfg, loggers, name):
                rows.append({"task": self.name, "subtask": subtask, "input": kind, **row})
        summary: dict[str, Any] = {}
        for subtask in dict.fromkeys(r["subtask"] for r in rows):
            best = max(
                (r for r in rows if r["subtask"] == subtask), key=lambda r: r["val_acc"] or -1.0
            )
            summary[f"best/{subtask}/test_acc"] = best["test_acc"]
            summary[f"best/{subtask}/probe"] = best["name"]
        figures = probe_figures(rows, reader, out_dir, title="visual coreference")
        return TaskOutput(rows, COLUMNS, figures, summary, console_rows=_console_rows(rows))


def phrase_type_names(reader: CacheReader) -> list[str]:
    return list(reader.label_names.get("phrase_type", FLICKR_TYPES))


def pair_split(reader: CacheReader) -> np.ndarray:
    """Split of every pair row: the split of its phrase's example (never per pair)."""
    phrase = reader.array("pairs/coref/phrase")
    return reader.example_split[reader.array("units/phrase/example")[phrase]]


def phrase_texts(reader: CacheReader) -> np.ndarray:
    """The words of every phrase unit (lower-cased), from its example's text and word span."""
    texts = [t.split(" ") for t in example_texts(reader)]
    owner = reader.array("units/phrase/example")
    spans = reader.array("units/phrase/word_span")
    return np.array(
        [" ".join(texts[e][a:b]) for e, (a, b) in zip(owner, spans, strict=True)], dtype=object
    )


def balanced_identification(corefer: np.ndarray, row_split: np.ndarray, seed: int) -> np.ndarray:
    """Labels 1 (matched) / 0 (mismatched) with as many of each per split; the rest -1.

    The larger class (mismatched: every other region of the image) is subsampled uniformly
    without replacement by a generator seeded with ``seed``, so a run is reproducible.
    """
    corefer = np.asarray(corefer, dtype=bool)
    labels = np.full(corefer.shape, -1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    for split in np.unique(row_split):
        pos = np.flatnonzero((row_split == split) & corefer)
        neg = np.flatnonzero((row_split == split) & ~corefer)
        keep = min(pos.size, neg.size)
        labels[np.sort(rng.choice(pos, keep, replace=False))] = 1
        labels[np.sort(rng.choice(neg, keep, replace=False))] = 0
    return labels


def _console_rows(rows: list[dict], top_heads: int = 5) -> list[dict]:
    """Every layer and all-heads row, but only the best few single heads per subtask."""
    short = [r for r in rows if r["input"] != "head"]
    for subtask in dict.fromkeys(r["subtask"] for r in rows):
        heads = [r for r in rows if r["subtask"] == subtask and r["input"] == "head"]
        short += sorted(heads, key=lambda r: -(r["val_acc"] or -1.0))[:top_heads]
    return short
