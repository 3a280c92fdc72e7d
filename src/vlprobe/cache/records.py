"""What the cache stores per example, and the label vocabularies: the writer's input types.

Owned by the cache (extraction produces them, the writer consumes them), so the cache package
imports nothing from extraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlprobe.data.types import FLICKR_TYPES


@dataclass
class LabelVocab:
    """Label names fixed before extraction, so ids are stable across the whole cache."""

    category: list[str]
    predicate: list[str]  # most frequent first
    sentence: list[str]

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "category": self.category,
            "predicate": self.predicate,
            "sentence": self.sentence,
            "phrase_type": list(FLICKR_TYPES),
        }


@dataclass
class ExampleRecord:
    """Per-example arrays; unit indices are local to the example (the writer offsets them)."""

    example_id: str
    group_id: str
    split: str
    hidden: np.ndarray  # (L, T, d)
    modality: np.ndarray  # (T,) int8
    word_index: np.ndarray  # (T,) int32
    cls_mass: np.ndarray  # (A, H, 2)
    region_emb: np.ndarray  # (L, R, d)
    region_category: np.ndarray  # (R,) int32
    region_box: np.ndarray  # (R, 4) float32
    phrase_emb: np.ndarray  # (L, P, d)
    phrase_type: np.ndarray  # (P,) int8
    phrase_types: np.ndarray  # (P, 8) bool
    phrase_span: np.ndarray  # (P, 2) int32
    sentence_cls: np.ndarray  # (L, S, d), S in {0, 1}
    sentence_mean: np.ndarray  # (L, S, d)
    sentence_label: np.ndarray  # (S,) int32
    rel_subject: np.ndarray  # (N,) int64 local region ids
    rel_object: np.ndarray
    rel_related: np.ndarray  # (N,) int8
    rel_predicate: np.ndarray  # (N,) int32, -1 unrelated
    rel_attention: np.ndarray  # (N, A, H, 2)
    coref_phrase: np.ndarray  # (M,) int64 local phrase ids, sorted
    coref_region: np.ndarray  # (M,) int64 local region ids
    coref_corefer: np.ndarray  # (M,) int8
    coref_attention: np.ndarray  # (M, A, H, 2)
    attention_map: np.ndarray | None  # (A, H, T, T) for the first few examples only
    dropped_phrases: int  # phrases whose words were all truncated away
    text: str = ""  # the input words joined by spaces: lexical types for control tasks

    @property
    def num_tokens(self) -> int:
        return int(self.modality.shape[0])
