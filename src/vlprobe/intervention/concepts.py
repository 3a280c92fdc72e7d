"""The concepts an eraser removes: which units carry them, their labels, which tokens to erase.

Labels come from the train split only: the K most frequent classes among its units (the rest,
and every unit outside train, are -1), so nothing of the val or test split shapes the eraser.
The eraser is fitted on the units' cached states (a region's or phrase's mean over its tokens,
a sentence's mean over its words) and applied to each of those tokens: an affine map commutes
with the mean, so the unit's state at the erased layer is exactly the erased mean.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import SPLIT_IDS, unit_path
from vlprobe.data.examples import VLExample

#: what the hook erases: every region token, or the tokens of the words ``Concept.words`` gives
TOKENS = ("regions", "words")


@dataclass(frozen=True)
class Concept:
    """A property of a kind of unit, read from the cache of ``dataset``."""

    name: str
    dataset: str  # the cache kind the eraser is fitted on
    unit: str  # units/<unit>/...: the rows the eraser is fitted on
    label_field: str  # units/<unit>/<label_field>: the class of each unit
    vocabulary: str  # label_names[<vocabulary>]: the class names
    feature: str  # units/<unit>/<feature>: the states the eraser is fitted on
    tokens: str  # what the hook erases (TOKENS)
    reads: tuple[str, ...]  # the cache parts fitting reads
    words_of: str = ""  # tokens="words": "phrases" (every phrase's words) or "all" (every word)

    @property
    def features(self) -> str:
        return unit_path(self.unit, self.feature)

    def words(self, example: VLExample) -> list[int]:
        """The words of ``example`` whose tokens the hook erases (``tokens="words"``)."""
        if self.words_of == "phrases":
            return sorted({w for p in example.phrases for w in range(p.word_start, p.word_end)})
        return list(range(len(example.inputs.words)))

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


#: the concepts that exist (docs/tasks/concept_erasure.md)
CONCEPTS = {
    # a region's Visual Genome object class, erased at every region token
    "region_class": Concept(
        name="region_class",
        dataset="visual_genome",
        unit="region",
        label_field="category",
        vocabulary="category",
        feature="embedding",
        tokens="regions",
        reads=("region",),
    ),
    # a phrase's Flickr30k entity type (its first), erased at the tokens of every phrase
    "phrase_type": Concept(
        name="phrase_type",
        dataset="flickr30k",
        unit="phrase",
        label_field="type",
        vocabulary="phrase_type",
        feature="embedding",
        tokens="words",
        reads=("phrase",),
        words_of="phrases",
    ),
    # a sentence's SentEval label (one SentEval task's data), erased at every word's tokens
    "senteval_label": Concept(
        name="senteval_label",
        dataset="senteval/past_present",
        unit="sentence",
        label_field="label",
        vocabulary="sentence",
        feature="mean",
        tokens="words",
        reads=("sentence",),
        words_of="all",
    ),
}


def concept(name: str, senteval_task: str | None = None) -> Concept:
    """The concept ``name``; ``senteval_label`` on ``senteval_task``'s data (default: the
    concept's, past_present)."""
    if name not in CONCEPTS:
        raise ValueError(
            f"intervention.concept={name!r} is not known; valid: {', '.join(CONCEPTS)}"
        )
    what = CONCEPTS[name]
    if senteval_task and what.dataset.startswith("senteval/"):
        return replace(what, dataset=f"senteval/{senteval_task}")
    return what
