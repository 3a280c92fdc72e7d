"""The concepts an eraser removes: which units carry them, their labels, which tokens to erase.

Labels come from the train split only: the K most frequent classes among its units (the rest,
and every unit outside train, are -1), so nothing of the val or test split shapes the eraser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import SPLIT_IDS, unit_path


@dataclass(frozen=True)
class Concept:
    """A property of a kind of unit, read from the cache of ``dataset``."""

    name: str
    dataset: str  # the cache kind the eraser is fitted on
    unit: str  # units/<unit>/...: the rows the eraser is fitted on
    label_field: str  # units/<unit>/<label_field>: the class of each unit
    vocabulary: str  # label_names[<vocabulary>]: the class names
    modality: str  # the tokens the hook erases: every token of this modality
    reads: tuple[str, ...]  # the cache parts fitting reads

    @property
    def features(self) -> str:
        return unit_path(self.unit, "embedding")

    def unit_split(self, reader: CacheReader) -> np.ndarray:
        """The split id of every unit (its example's)."""
        return reader.example_split[reader.unit(self.unit, "example")]

    def labels(self, reader: CacheReader, top_k: int) -> tuple[np.ndarray, list[str]]:
        """Per unit: its class among the ``top_k`` most frequent of the train split, else -1,
        for every split (probes test on val/test); the class names in label order."""
        raw = reader.unit(self.unit, self.label_field).astype(np.int64)
        train = raw[(self.unit_split(reader) == SPLIT_IDS["train"]) & (raw >= 0)]
        if train.size == 0:
            raise ValueError(
                f"concept {self.name}: {reader.path} has no labelled {self.unit} in its train "
                "split, so there is nothing to fit an eraser on"
            )
        counts = np.bincount(train)
        order = np.argsort(-counts, kind="stable")[: min(top_k, int((counts > 0).sum()))]
        if len(order) < 2:
            raise ValueError(f"concept {self.name}: one class in the train split, nothing to erase")
        new_id = np.full(int(raw.max()) + 1, -1, np.int64)
        new_id[order] = np.arange(len(order))
        names = reader.label_names[self.vocabulary]
        return np.where(raw >= 0, new_id[np.maximum(raw, 0)], -1), [names[i] for i in order]


#: the concepts that exist (phrase_type and senteval_label: not yet, docs/tasks/concept_erasure.md)
CONCEPTS = {
    "region_class": Concept(
        name="region_class",
        dataset="visual_genome",
        unit="region",
        label_field="category",
        vocabulary="category",
        modality="image",
        reads=("region",),
    ),
}


def concept(name: str) -> Concept:
    if name not in CONCEPTS:
        raise ValueError(
            f"intervention.concept={name!r} is not known; valid: {', '.join(CONCEPTS)}"
        )
    return CONCEPTS[name]
