"""ExampleRecord.with_units: fields not given are empty with the shapes the writer expects."""

from __future__ import annotations

import numpy as np
import pytest

from vlprobe.cache.records import ExampleRecord


def _record(**fields: object) -> ExampleRecord:
    return ExampleRecord.with_units(
        example_id="e",
        group_id="g",
        split="train",
        hidden=np.zeros((3, 5, 8), np.float32),
        modality=np.zeros(5, np.int8),
        word_index=np.zeros(5, np.int32),
        cls_mass=np.zeros((2, 4, 2), np.float32),
        **fields,
    )


def test_missing_units_are_empty_with_the_right_shapes() -> None:
    labels = np.array([1], np.int32)
    rec = _record(sentence_label=labels)
    assert rec.sentence_label is labels
    assert rec.region_emb.shape == (3, 0, 8) and rec.sentence_cls.shape == (3, 0, 8)
    assert rec.rel_attention.shape == (0, 2, 4, 2) == rec.coref_attention.shape
    assert rec.phrase_types.shape == (0, 8) and rec.phrase_types.dtype == bool
    assert rec.attention_map is None and rec.dropped_phrases == 0 and rec.num_tokens == 5


def test_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError, match="region_embedding"):
        _record(region_embedding=np.zeros((3, 1, 8)))
