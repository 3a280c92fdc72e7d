"""Reduce one encoded example to what the VALUE tasks need, before it reaches the cache.

Spans of tokens become units (phrase, region, sentence); pairs of units keep the attention of
every head in both directions. Attention from a span to a span is the mean over the query
span's tokens of the summed attention to the key span's tokens, so a one-token region and a
multi-patch region (ViLT) are measured alike and values stay in [0, 1].
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from vlprobe.analysis.alignment import argmax_credit
from vlprobe.cache.records import ExampleRecord, LabelVocab
from vlprobe.data.examples import VLExample
from vlprobe.data.types import FLICKR_TYPES
from vlprobe.models.base import EncodedExample

TYPE_IDS = {name: i for i, name in enumerate(FLICKR_TYPES)}


def span_attention(att: torch.Tensor, query: list[int], key: list[int]) -> torch.Tensor:
    """(A, H) attention from the query span to the key span (mean over queries, sum over keys)."""
    rows = att[:, :, query, :]
    return rows[:, :, :, key].sum(-1).mean(-1)


def _span_matrix(spans: list[list[int]], num_tokens: int, mean: bool) -> torch.Tensor:
    """(len(spans), T): rows averaging (``mean``) or summing each span's tokens."""
    out = torch.zeros(len(spans), num_tokens)
    for i, span in enumerate(spans):
        out[i, span] = 1.0 / len(span) if mean else 1.0
    return out


def _pair_attention(
    att: torch.Tensor,
    spans_a: list[list[int]],
    spans_b: list[list[int]],
    pairs: list[tuple[int, int]],
) -> np.ndarray:
    """(N, A, H, 2) span attention a->b and b->a for every pair, in two batched matmuls."""
    num_layers, num_heads, num_tokens = att.shape[:3]
    if not pairs:
        return np.zeros((0, num_layers, num_heads, 2), dtype=np.float32)
    first = torch.tensor([a for a, _ in pairs])
    second = torch.tensor([b for _, b in pairs])
    query_a = _span_matrix(spans_a, num_tokens, mean=True)
    query_b = _span_matrix(spans_b, num_tokens, mean=True)
    key_a = _span_matrix(spans_a, num_tokens, mean=False)
    key_b = _span_matrix(spans_b, num_tokens, mean=False)
    a_to_b = query_a @ att @ key_b.T  # (A, H, |a|, |b|)
    b_to_a = query_b @ att @ key_a.T  # (A, H, |b|, |a|)
    out = torch.stack([a_to_b[:, :, first, second], b_to_a[:, :, second, first]], dim=-1)
    return out.permute(2, 0, 1, 3).numpy().astype(np.float32)


def _grounding(
    att: torch.Tensor, phrase_spans: list[list[int]], gold: list[set[int]], enc: EncodedExample
) -> tuple[np.ndarray, np.ndarray]:
    """Per phrase and head, the argmax credit over ALL input regions of the image, and chance.

    Computed here in float32 (a float16 cache would round nearby attention values into ties);
    ``gold`` holds the input-region indices tied to each phrase's chain.
    """
    num_layers, num_heads = att.shape[:2]
    num_regions = len(enc.region_tokens)
    if not phrase_spans or num_regions == 0:
        empty = np.zeros((len(phrase_spans), num_layers, num_heads), np.float32)
        return empty, np.zeros(len(phrase_spans), np.float32)
    query = _span_matrix(phrase_spans, att.shape[2], mean=True)
    key = _span_matrix([list(t) for t in enc.region_tokens], att.shape[2], mean=False)
    scores = (query @ att @ key.T).permute(2, 3, 0, 1).numpy()  # (P, R_in, A, H)
    is_gold = [np.isin(np.arange(num_regions), sorted(g)) for g in gold]
    credit = np.stack([argmax_credit(s, g) for s, g in zip(scores, is_gold, strict=True)])
    chance = np.array([len(g) / num_regions for g in gold], np.float32)
    return credit.astype(np.float32), chance


def _mean_over(hidden: torch.Tensor, spans: list[list[int]]) -> np.ndarray:
    num_layers, _, dim = hidden.shape
    out = np.zeros((num_layers, len(spans), dim), dtype=np.float32)
    for i, span in enumerate(spans):
        out[:, i] = hidden[:, span].mean(1).numpy()
    return out


def restrict_to(example: VLExample, enc: EncodedExample) -> VLExample:
    """``example`` with what ``enc`` has no tokens for removed: regions (and the relations and
    phrase-region links over them) for a text-only stream, phrases and the sentence label for
    an image-only one (LXMERT's language and vision streams)."""
    has_text = bool((enc.modality == 0).any())
    if enc.region_tokens or not example.regions:
        regions, relations, phrases = example.regions, example.relations, example.phrases
    else:
        regions, relations = [], []
        phrases = [replace(p, regions=()) for p in example.phrases]
    return replace(
        example,
        regions=regions,
        relations=relations,
        phrases=phrases if has_text else [],
        label=example.label if has_text else None,
    )


def reduce_example(
    example: VLExample, enc: EncodedExample, labels: LabelVocab, keep_map: bool = False
) -> ExampleRecord:
    """Compute units, pairs and attention summaries of one example."""
    hidden, att = enc.hidden.float(), enc.attentions.float()
    num_layers, num_heads = att.shape[:2]
    word_index = enc.word_index.numpy().astype(np.int32)
    modality = enc.modality.numpy().astype(np.int8)
    text_positions = [i for i, w in enumerate(word_index) if w >= 0]

    region_spans = [list(enc.region_tokens[r.region_index]) for r in example.regions]
    cat_ids = {c: i for i, c in enumerate(labels.category)}

    kept_phrases, phrase_spans = [], []
    for phrase in example.phrases:
        tokens = [p for p in text_positions if phrase.word_start <= word_index[p] < phrase.word_end]
        if tokens:
            kept_phrases.append(phrase)
            phrase_spans.append(tokens)

    coref_pairs = [(p, r) for p in range(len(kept_phrases)) for r in range(len(example.regions))]
    coref_gold = [int(r in kept_phrases[p].regions) for p, r in coref_pairs]
    rel_pairs = [(rel.subject, rel.object) for rel in example.relations]
    pred_ids = {p: i for i, p in enumerate(labels.predicate)}

    mass = att[:, :, 0, :]  # [CLS] is the first text token for every adapter
    image_mask = torch.from_numpy(modality == 1)
    cls_mass = torch.stack([mass[..., ~image_mask].sum(-1), mass[..., image_mask].sum(-1)], -1)
    if image_mask.all():  # no [CLS] at all (LXMERT's vision stream): nothing to measure
        cls_mass = torch.full_like(cls_mass, float("nan"))
    special_mask = torch.from_numpy((modality == 0) & (word_index < 0))
    grounding, grounding_chance = _grounding(
        att,
        phrase_spans,
        [{example.regions[r].region_index for r in p.regions} for p in kept_phrases],
        enc,
    )

    has_sentence = example.label is not None
    sentence_ids = {s: i for i, s in enumerate(labels.sentence)}
    text_span = text_positions or [0]
    return ExampleRecord(
        example_id=example.example_id,
        group_id=example.group_id,
        split=example.split,
        hidden=hidden.numpy(),
        modality=modality,
        word_index=word_index,
        cls_mass=cls_mass.numpy(),
        cls_special_mass=mass[..., special_mask].sum(-1).numpy(),
        region_emb=_mean_over(hidden, region_spans),
        region_category=np.array([cat_ids[r.category] for r in example.regions], dtype=np.int32),
        region_box=np.array([r.box.as_array() for r in example.regions], np.float32).reshape(-1, 4),
        phrase_emb=_mean_over(hidden, phrase_spans),
        phrase_type=np.array([TYPE_IDS[p.types[0]] for p in kept_phrases], dtype=np.int8),
        phrase_types=np.array(
            [[t in p.types for t in FLICKR_TYPES] for p in kept_phrases], dtype=bool
        ).reshape(-1, len(FLICKR_TYPES)),
        phrase_span=np.array(
            [(p.word_start, p.word_end) for p in kept_phrases], dtype=np.int32
        ).reshape(-1, 2),
        phrase_grounding=grounding,
        phrase_grounding_chance=grounding_chance,
        sentence_cls=hidden[:, :1].numpy() if has_sentence else _mean_over(hidden, []),
        sentence_mean=_mean_over(hidden, [text_span] if has_sentence else []),
        sentence_label=np.array([sentence_ids[example.label]] if has_sentence else [], np.int32),
        rel_subject=np.array([s for s, _ in rel_pairs], dtype=np.int64),
        rel_object=np.array([o for _, o in rel_pairs], dtype=np.int64),
        rel_related=np.array([r.predicate is not None for r in example.relations], np.int8),
        rel_predicate=np.array(
            [pred_ids[r.predicate] if r.predicate is not None else -1 for r in example.relations],
            dtype=np.int32,
        ),
        rel_attention=_pair_attention(att, region_spans, region_spans, rel_pairs).reshape(
            len(rel_pairs), num_layers, num_heads, 2
        ),
        coref_phrase=np.array([p for p, _ in coref_pairs], dtype=np.int64),
        coref_region=np.array([r for _, r in coref_pairs], dtype=np.int64),
        coref_corefer=np.array(coref_gold, dtype=np.int8),
        coref_attention=_pair_attention(att, phrase_spans, region_spans, coref_pairs).reshape(
            len(coref_pairs), num_layers, num_heads, 2
        ),
        attention_map=att.numpy() if keep_map else None,
        dropped_phrases=len(example.phrases) - len(kept_phrases),
        text=" ".join(example.inputs.words),
    )
