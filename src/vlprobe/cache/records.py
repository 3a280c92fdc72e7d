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

    @classmethod
    def with_units(
        cls,
        *,
        example_id: str,
        group_id: str,
        split: str,
        hidden: np.ndarray,
        modality: np.ndarray,
        word_index: np.ndarray,
        cls_mass: np.ndarray,
        **fields: object,
    ) -> ExampleRecord:
        """A record whose unit and pair fields not given are empty (0 rows, right shapes):
        a data set has only some unit kinds (Visual Genome: regions and relations)."""
        layers, _, dim = hidden.shape
        heads = cls_mass.shape[:2]

        def rows(*shape: int, dtype: type = np.float32) -> np.ndarray:
            return np.zeros(shape, dtype)

        empty: dict[str, object] = {
            "region_emb": rows(layers, 0, dim),
            "region_category": rows(0, dtype=np.int32),
            "region_box": rows(0, 4),
            "phrase_emb": rows(layers, 0, dim),
            "phrase_type": rows(0, dtype=np.int8),
            "phrase_types": rows(0, 8, dtype=bool),
            "phrase_span": rows(0, 2, dtype=np.int32),
            "sentence_cls": rows(layers, 0, dim),
            "sentence_mean": rows(layers, 0, dim),
            "sentence_label": rows(0, dtype=np.int32),
            "rel_subject": rows(0, dtype=np.int64),
            "rel_object": rows(0, dtype=np.int64),
            "rel_related": rows(0, dtype=np.int8),
            "rel_predicate": rows(0, dtype=np.int32),
            "rel_attention": rows(0, *heads, 2),
            "coref_phrase": rows(0, dtype=np.int64),
            "coref_region": rows(0, dtype=np.int64),
            "coref_corefer": rows(0, dtype=np.int8),
            "coref_attention": rows(0, *heads, 2),
            "attention_map": None,
            "dropped_phrases": 0,
        }
        unknown = sorted(set(fields) - set(empty) - {"text"})
        if unknown:
            raise TypeError(f"ExampleRecord has no field(s) {unknown}")
        return cls(
            example_id=example_id,
            group_id=group_id,
            split=split,
            hidden=hidden,
            modality=modality,
            word_index=word_index,
            cls_mass=cls_mass,
            **{**empty, **fields},  # type: ignore[arg-type]
        )

    @property
    def num_tokens(self) -> int:
        return int(self.modality.shape[0])
