"""VALUE task 4, image-to-image interaction: relations between two regions (Visual Genome).

Identification: is a region pair related (annotated) or not (sampled, balanced; chance 50%)?
Classification: which of the K most frequent normalised predicates relates the pair?
Inputs: per-layer region embeddings ``[subject; object]``, the pair's attention over all heads
in both directions (one probe), or each head alone (one probe per head, ranking the heads).
Control type of a pair: its (subject category, object category).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from probes.tasks.pair_probing import (
    PAIR_INPUTS,
    LabelSet,
    PairProbingTask,
    PairTable,
    check_choices,
)
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import pair_path, unit_path

SUBTASKS = ("identification", "classification")


@dataclass
class VisualRelationTask(PairProbingTask):
    mismatched_refusal: ClassVar[str | None] = None
    reads: ClassVar[tuple[str, ...]] = ("region", "relation")  # the cache parts it reads
    modalities: ClassVar[tuple[str, ...]] = ("image",)  # the tokens it reads
    name: str = "visual_relation"
    dataset: str = "visual_genome"
    subtasks: tuple[str, ...] = SUBTASKS
    inputs: tuple[str, ...] = PAIR_INPUTS
    num_predicates: int = 30
    title: str = "visual relation"

    def __post_init__(self) -> None:
        check_choices("task.subtasks", self.subtasks, SUBTASKS)
        check_choices("task.inputs", self.inputs, PAIR_INPUTS)

    def table(self, reader: CacheReader) -> PairTable:
        subject = reader.pair("relation", "subject")
        region_example = reader.unit("region", "example")
        return PairTable(
            left=unit_path("region", "embedding"),
            left_index=subject,
            right=unit_path("region", "embedding"),
            right_index=reader.pair("relation", "object"),
            attention=pair_path("relation", "attention"),
            row_split=reader.example_split[region_example[subject]],
        )

    def labels(self, reader: CacheReader, subtask: str) -> tuple[np.ndarray, list[str]]:
        related = reader.pair("relation", "related").astype(np.int64)
        if subtask == "identification":
            return related, ["unrelated", "related"]
        predicate = reader.pair("relation", "predicate").astype(np.int64)
        names = reader.label_names["predicate"][: self.num_predicates]
        keep = (related == 1) & (predicate >= 0) & (predicate < len(names))
        return np.where(keep, predicate, -1), names

    def label_sets(self, reader: CacheReader) -> list[LabelSet]:
        # control type: the subject's category. It recurs in every split, and a probe over
        # [subject; object] can fit one label per type (a label per (subject, object) category
        # pair is an interaction a linear probe cannot fit, which inflated selectivity)
        subject = reader.pair("relation", "subject")
        subject_type = reader.unit("region", "category").astype(np.int64)[subject]
        return [
            LabelSet(subtask, *self.labels(reader, subtask), control_types=subject_type)
            for subtask in self.subtasks
        ]
