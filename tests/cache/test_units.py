"""Units, pair attention and [CLS] mass computed from a hand-made encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlprobe.cache.records import LabelVocab
from vlprobe.data.examples import PhraseSpan, Region, RelationPair, VLExample
from vlprobe.data.types import Box
from vlprobe.extraction.units import reduce_example, span_attention
from vlprobe.models.base import EncodedExample, ModelInput

# tokens: 0 [CLS], 1 "a", 2 "red", 3 "dog"(sub 1), 4 "dog"(sub 2), 5 [SEP], 6 region0, 7 region1
WORD_INDEX = [-1, 0, 1, 2, 2, -1, -1, -1]
MODALITY = [0, 0, 0, 0, 0, 0, 1, 1]


def _encoding() -> EncodedExample:
    torch.manual_seed(0)
    num_layers, num_heads, tokens = 2, 3, len(WORD_INDEX)
    att = torch.rand(num_layers, num_heads, tokens, tokens)
    att = att / att.sum(-1, keepdim=True)
    hidden = torch.arange(3 * tokens * 4, dtype=torch.float32).reshape(3, tokens, 4)
    return EncodedExample(
        hidden=hidden,
        attentions=att,
        modality=torch.tensor(MODALITY, dtype=torch.int8),
        word_index=torch.tensor(WORD_INDEX),
        region_tokens=[[6], [7]],
    )


def _example() -> VLExample:
    regions = [
        Region(0, Box(0, 0, 10, 10), "dog", "1"),
        Region(1, Box(5, 5, 20, 20), "ball", "2"),
    ]
    return VLExample(
        example_id="img#0",
        group_id="img",
        split="train",
        inputs=ModelInput(words=["a", "red", "dog"]),
        regions=regions,
        phrases=[PhraseSpan(0, 3, ("animals", "other"), "1", (0,))],
        relations=[RelationPair(0, 1, "near"), RelationPair(1, 0, None)],
    )


LABELS = LabelVocab(category=["ball", "dog"], predicate=["near"], sentence=[])


def test_span_attention_is_mean_over_queries_of_summed_keys() -> None:
    att = torch.zeros(1, 1, 4, 4)
    att[0, 0, 1] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    att[0, 0, 2] = torch.tensor([0.4, 0.3, 0.2, 0.1])
    value = span_attention(att, [1, 2], [2, 3])
    assert value.item() == pytest.approx(((0.3 + 0.4) + (0.2 + 0.1)) / 2)


def test_reduce_example_units_pairs_and_cls_mass() -> None:
    enc, ex = _encoding(), _example()
    rec = reduce_example(ex, enc, LABELS, keep_map=True)
    hidden, att = enc.hidden.numpy(), enc.attentions.numpy()
    # phrase "a red dog" = tokens 1..4 (the two dog subwords included)
    np.testing.assert_allclose(rec.phrase_emb[:, 0], hidden[:, 1:5].mean(1))
    np.testing.assert_allclose(rec.region_emb[:, 1], hidden[:, 7])
    assert rec.phrase_type.tolist() == [3]  # animals
    assert rec.phrase_types[0].tolist() == [0, 0, 0, 1, 0, 0, 0, 1]
    assert rec.region_category.tolist() == [1, 0]
    # relation pair 0: region0 -> region1 is att[..., 6, 7]; reverse att[..., 7, 6]
    np.testing.assert_allclose(rec.rel_attention[0, :, :, 0], att[:, :, 6, 7], rtol=1e-6)
    np.testing.assert_allclose(rec.rel_attention[0, :, :, 1], att[:, :, 7, 6], rtol=1e-6)
    assert rec.rel_related.tolist() == [1, 0] and rec.rel_predicate.tolist() == [0, -1]
    # coref: the phrase against both regions, gold only for region 0
    assert rec.coref_phrase.tolist() == [0, 0] and rec.coref_region.tolist() == [0, 1]
    assert rec.coref_corefer.tolist() == [1, 0]
    expected = att[:, :, 1:5, 6].mean(-1)
    np.testing.assert_allclose(rec.coref_attention[0, :, :, 0], expected, rtol=1e-6)
    # [CLS] mass: text tokens 0..5, image 6..7; the two sum to 1
    np.testing.assert_allclose(rec.cls_mass[..., 0], att[:, :, 0, :6].sum(-1), rtol=1e-6)
    np.testing.assert_allclose(rec.cls_mass.sum(-1), 1.0, rtol=1e-5)
    assert rec.attention_map is not None and rec.attention_map.shape == (2, 3, 8, 8)


def test_truncated_phrase_is_dropped_and_counted() -> None:
    ex = _example()
    ex.phrases.append(PhraseSpan(5, 7, ("people",), "3", (0,)))  # words beyond the text
    rec = reduce_example(ex, _encoding(), LABELS)
    assert rec.phrase_type.shape == (1,) and rec.dropped_phrases == 1
