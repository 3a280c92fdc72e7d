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
from typing import ClassVar

import numpy as np

from datamodules.views import example_texts, type_ids
from probes.tasks.pair_probing import (
    PAIR_INPUTS,
    LabelSet,
    PairProbingTask,
    PairTable,
    check_choices,
)
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import pair_path, unit_path
from vlprobe.data.types import FLICKR_TYPES

SUBTASKS = ("type", "identification")


@dataclass
class VisualCoreferenceTask(PairProbingTask):
    mismatched_refusal: ClassVar[str | None] = (
        "a mismatched caption's phrases corefer with no region of the image, so there are no "
        "phrase-region pairs to label"
    )
    reads: ClassVar[tuple[str, ...]] = ("phrase", "region", "coref")  # the cache parts it reads
    modalities: ClassVar[tuple[str, ...]] = ("text", "image")  # the tokens it reads
    name: str = "visual_coreference"
    dataset: str = "flickr30k"
    subtasks: tuple[str, ...] = SUBTASKS
    inputs: tuple[str, ...] = PAIR_INPUTS
    multi_label: bool = False
    sample_seed: int = 0
    title: str = "visual coreference"

    def __post_init__(self) -> None:
        check_choices("task.subtasks", self.subtasks, SUBTASKS)
        check_choices("task.inputs", self.inputs, PAIR_INPUTS)

    def table(self, reader: CacheReader) -> PairTable:
        return PairTable(
            left=unit_path("phrase", "embedding"),
            left_index=reader.pair("coref", "phrase"),
            right=unit_path("region", "embedding"),
            right_index=reader.pair("coref", "region"),
            attention=pair_path("coref", "attention"),
            row_split=pair_split(reader),
        )

    def label_sets(self, reader: CacheReader) -> list[LabelSet]:
        """Labels per pair row (or -1) for every selected subtask, with control types.

        Control types are lexical and recur across splits: the phrase's last word, its head
        noun in English (``type``), and the region's category (``identification``: one label
        per category, which the region half of the probe input can fit; a label per (phrase,
        region) combination is an interaction a linear probe cannot fit).
        """
        phrase = reader.pair("coref", "phrase")
        region = reader.pair("coref", "region")
        corefer = reader.pair("coref", "corefer").astype(bool)
        head_words = np.array([w.rsplit(" ", 1)[-1] for w in phrase_texts(reader)])[phrase]
        word_types = type_ids(head_words.astype(str))
        pair_types = reader.unit("region", "category").astype(np.int64)[region]
        out = []
        for subtask in self.subtasks:
            if subtask == "identification":
                labels = balanced_identification(corefer, pair_split(reader), self.sample_seed)
                out.append(LabelSet(subtask, labels, ["mismatched", "matched"], pair_types))
            elif self.multi_label:
                types = reader.unit("phrase", "types")[phrase]  # (N, 8)
                for t, type_name in enumerate(phrase_type_names(reader)):
                    labels = np.where(corefer, types[:, t].astype(np.int64), -1)
                    names = [f"not {type_name}", type_name]
                    out.append(LabelSet(f"type_{type_name}", labels, names, word_types))
            else:
                first = reader.unit("phrase", "type").astype(np.int64)[phrase]
                labels = np.where(corefer, first, -1)
                out.append(LabelSet(subtask, labels, phrase_type_names(reader), word_types))
        return out


def phrase_type_names(reader: CacheReader) -> list[str]:
    return list(reader.label_names.get("phrase_type", FLICKR_TYPES))


def pair_split(reader: CacheReader) -> np.ndarray:
    """Split of every pair row: the split of its phrase's example (never per pair)."""
    phrase = reader.pair("coref", "phrase")
    return reader.example_split[reader.unit("phrase", "example")[phrase]]


def phrase_texts(reader: CacheReader) -> np.ndarray:
    """The words of every phrase unit (lower-cased), from its example's text and word span."""
    texts = [t.split(" ") for t in example_texts(reader)]
    owner = reader.unit("phrase", "example")
    spans = reader.unit("phrase", "word_span")
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
