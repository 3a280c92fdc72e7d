"""Image-caption pairs for pre-training, and batches with UNITER's masking.

Only images that are in the training split of every probing data set are used (Flickr30k
Entities train, and not in Visual Genome's held-out hash split), so no probe is evaluated on
an image the model was pre-trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from vlprobe.data.builders import build_flickr_examples, build_vg_examples
from vlprobe.data.examples import VLExample
from vlprobe.data.region_features import load_region_features
from vlprobe.models.regions import check_features, pad_rows
from vlprobe.models.tokenization import tokenize_words
from vlprobe.models.uniter import box7

SCENE = ("scene",)  # Flickr30k Entities' type of the background a caption places things in
COORDINATORS = ("and", "or", ",")  # `a man and a horse are`: a link that states no relation


@dataclass
class Pair:
    """One caption with its image's regions, tokenized once."""

    image_id: str
    input_ids: np.ndarray  # (n,) with [CLS] ... [SEP]
    feats: np.ndarray  # (N, D)
    boxes: np.ndarray  # (N, 7)
    # token spans [start, end) of the phrases that name a region of the image, with their type
    phrases: list[tuple[int, int, str]] = field(default_factory=list)


def training_pairs(
    flickr30k: str | Path,
    visual_genome: str | Path,
    features: str | Path,
    vg_split: Sequence[float],
    tokenizer: PreTrainedTokenizerBase,
    feature_dim: int,
    max_text_length: int = 64,
) -> list[Pair]:
    """Every caption of a training image, with that image's detector regions."""
    regions = load_region_features(Path(features))
    held_out = {
        ex.group_id
        for ex in build_vg_examples(Path(visual_genome), regions, split_fractions=tuple(vg_split))
        if ex.split != "train"
    }
    examples = [
        ex
        for ex in build_flickr_examples(Path(flickr30k), regions, splits=("train",))
        if ex.group_id not in held_out and ex.inputs.region_features is not None
    ]
    if not examples:
        raise ValueError(f"no training images with captions and regions under {flickr30k}")
    return _pairs(examples, tokenizer, feature_dim, max_text_length)


def held_out_pairs(
    flickr30k: str | Path,
    features: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    feature_dim: int,
    split: str = "val",
    max_text_length: int = 64,
) -> list[Pair]:
    """Every caption of Flickr30k Entities' ``split`` images: never pre-trained on, since
    :func:`training_pairs` takes Flickr30k's training images only."""
    if split == "train":
        raise ValueError("held-out pairs come from a split pre-training does not use: val or test")
    regions = load_region_features(Path(features))
    examples = [
        ex
        for ex in build_flickr_examples(Path(flickr30k), regions, splits=(split,))
        if ex.inputs.region_features is not None
    ]
    return _pairs(examples, tokenizer, feature_dim, max_text_length)


def _pairs(
    examples: Sequence[VLExample],
    tokenizer: PreTrainedTokenizerBase,
    feature_dim: int,
    max_text_length: int,
) -> list[Pair]:
    if not examples:
        return []
    text = tokenize_words(tokenizer, [ex.inputs.words for ex in examples], max_text_length)
    return [
        Pair(
            image_id=ex.group_id,
            input_ids=text.input_ids[i, : text.lengths[i]].numpy(),
            feats=check_features(ex.inputs, feature_dim, "uniter-mini"),
            boxes=box7(ex.inputs),
            phrases=_token_spans(ex, text.word_index[i].numpy()),
        )
        for i, ex in enumerate(examples)
    ]


def _token_spans(example: VLExample, word_index: np.ndarray) -> list[tuple[int, int, str]]:
    """Grounded phrases as token spans (first type); phrases cut off by truncation dropped."""
    spans = []
    for phrase in example.phrases:
        tokens = np.flatnonzero((word_index >= phrase.word_start) & (word_index < phrase.word_end))
        if phrase.regions and len(tokens) and word_index.max() >= phrase.word_end - 1:
            spans.append((int(tokens[0]), int(tokens[-1]) + 1, phrase.types[0]))
    return spans


def relation_spans(pair: Pair, coordinators: set[int]) -> list[tuple[int, int]]:
    """Links between two object phrases (not a scene) that are more than a coordinator."""
    return [
        (start, end)
        for start, end in link_spans(pair.phrases, skip=SCENE)
        if not set(pair.input_ids[start:end].tolist()) <= coordinators
    ]


def link_spans(
    phrases: Sequence[tuple[int, int, str]], longest: int = 3, skip: Sequence[str] = ()
) -> list[tuple[int, int]]:
    """Token spans between two consecutive grounded phrases, at most ``longest`` tokens long.

    In ``a man riding a horse`` that is ``riding``: the words that say how two named regions
    relate, the predicate of the relation when the caption states one. Links to a phrase of a
    type in ``skip`` are left out (``scene``: ``at the park`` places, it relates no objects).
    """
    ordered = sorted(phrases)
    return [
        (end, start)
        for (_, end, first), (start, _, second) in zip(ordered, ordered[1:], strict=False)
        if 0 < start - end <= longest and first not in skip and second not in skip
    ]


class PairCollator:
    """Matched and mismatched pairs (ITM), masked words (MLM) and masked regions (MRFR).

    A pair keeps its caption with probability ``1 - negative_prob``. A mismatched pair is,
    with probability ``hard_prob``, its own caption with one grounded phrase swapped for a
    phrase of the same entity type from another image (a hard negative: telling it apart
    needs that phrase checked against the regions), else a caption of another image. A swap
    whose tokens all occur in the image's own phrases (``a man`` for ``the man``) is not
    taken. Matched pairs mask one modality at a time, as UNITER does: with probability
    ``mrfr_share`` (when ``mrfr``) regions are masked with ``mask_prob`` (features zeroed;
    the model adds its mask embedding), else words are: tokens of grounded phrases with
    ``phrase_mask_prob`` (predicting a word that names a region needs that region), the words
    linking two grounded phrases (``riding``, ``next to``: see :func:`link_spans`) with
    ``link_mask_prob`` (predicting them needs the two regions' relation), others
    with ``mask_prob`` (80% [MASK], 10% a random word, 10% unchanged).
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        tokenizer: PreTrainedTokenizerBase,
        mask_prob: float = 0.15,
        negative_prob: float = 0.5,
        seed: int = 0,
        *,
        phrase_mask_prob: float | None = None,
        hard_prob: float = 0.0,
        relation_prob: float = 0.0,
        link_mask_prob: float = 0.0,
        mrfr: bool = True,
        mrfr_share: float = 1 / 3,
        clean_prob: float = 0.0,
    ) -> None:
        self.pairs = pairs
        self.mask_id = int(tokenizer.mask_token_id)
        self.special = set(tokenizer.all_special_ids)
        self.vocab = len(tokenizer)
        self.mask_prob, self.negative_prob = mask_prob, negative_prob
        # share of pairs matched and left unmasked, for ITM alone (0: every matched pair is
        # masked, and ITM reads every pair). Every masked pair is matched, so an ITM that reads
        # masked pairs learns "a [MASK] or a zeroed region means matched" (1.0 on training
        # batches) and calls every unmasked held-out pair mismatched; with clean pairs ITM reads
        # only unmasked pairs ("itm_mask"), as UNITER's ITM batches are unmasked
        self.clean_prob = clean_prob
        self.phrase_mask_prob = mask_prob if phrase_mask_prob is None else phrase_mask_prob
        self.hard_prob, self.relation_prob = hard_prob, relation_prob
        self.link_mask_prob = link_mask_prob
        self.mrfr_share = mrfr_share if mrfr else 0.0
        self.rng = np.random.default_rng(seed)
        self.by_type: dict[str, list[np.ndarray]] = {}
        self.image_tokens: dict[str, set[int]] = {}
        coordinators = set(tokenizer.convert_tokens_to_ids(list(COORDINATORS)))
        self.relation_spans = [relation_spans(pair, coordinators) for pair in pairs]
        self.links = [
            pair.input_ids[start:end]
            for pair, spans in zip(pairs, self.relation_spans, strict=True)
            for start, end in spans
        ]
        for pair in pairs:
            for start, end, kind in pair.phrases:
                tokens = pair.input_ids[start:end]
                self.by_type.setdefault(kind, []).append(tokens)
                self.image_tokens.setdefault(pair.image_id, set()).update(tokens.tolist())

    def _other_caption(self, index: int) -> np.ndarray:
        image = self.pairs[index].image_id
        while True:
            other = self.pairs[int(self.rng.integers(len(self.pairs)))]
            if other.image_id != image:
                return other.input_ids

    def _swapped_phrase(self, index: int) -> np.ndarray | None:
        """The caption with one phrase replaced by another image's phrase of the same type."""
        pair = self.pairs[index]
        if not pair.phrases:
            return None
        start, end, kind = pair.phrases[int(self.rng.integers(len(pair.phrases)))]
        own = self.image_tokens[pair.image_id]
        return self._splice(pair, start, end, self.by_type[kind], lambda t: not set(t) <= own)

    def _swapped_link(self, index: int) -> np.ndarray | None:
        """The caption with the words linking two phrases swapped for another caption's.

        ``a man riding a horse`` becomes ``a man below a horse``: telling it from the true
        caption needs the two regions' relation (a relation negative, as ERNIE-ViL's scene-graph
        objectives ask the predicate of the image).
        """
        pair, spans = self.pairs[index], self.relation_spans[index]
        if not spans or not self.links:
            return None
        start, end = spans[int(self.rng.integers(len(spans)))]
        own = pair.input_ids[start:end].tolist()
        return self._splice(pair, start, end, self.links, lambda t: t != own)

    def _splice(
        self,
        pair: Pair,
        start: int,
        end: int,
        bank: Sequence[np.ndarray],
        accept: Callable[[list[int]], bool],
    ) -> np.ndarray | None:
        """The caption with tokens ``start:end`` replaced by the first of up to 10 draws from
        ``bank`` that ``accept`` takes (None if none: the caller falls back)."""
        for _ in range(10):
            tokens = bank[int(self.rng.integers(len(bank)))]
            if accept(tokens.tolist()):
                return np.concatenate([pair.input_ids[:start], tokens, pair.input_ids[end:]])
        return None

    def _mask_words(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        ids, labels = pair.input_ids.copy(), np.full_like(pair.input_ids, -100)
        prob = np.full(len(ids), self.mask_prob)
        if self.link_mask_prob > self.mask_prob:
            for start, end in link_spans(pair.phrases):
                prob[start:end] = self.link_mask_prob
        for start, end, _ in pair.phrases:
            prob[start:end] = self.phrase_mask_prob
        candidates = [i for i, t in enumerate(ids) if int(t) not in self.special]
        chosen = [i for i in candidates if self.rng.random() < prob[i]]
        if not chosen and candidates:  # every matched caption teaches something
            chosen = [candidates[int(self.rng.integers(len(candidates)))]]
        for i in chosen:
            labels[i] = ids[i]
            roll = self.rng.random()
            if roll < 0.8:
                ids[i] = self.mask_id
            elif roll < 0.9:
                ids[i] = int(self.rng.integers(self.vocab))
        return ids, labels

    def __call__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        ids, labels, feats, targets, masked, boxes, itm = [], [], [], [], [], [], []
        itm_rows = []
        for index in indices:
            pair = self.pairs[index]
            region_mask = np.zeros(len(pair.feats), np.int64)
            word_labels = np.full_like(pair.input_ids, -100)
            if self.rng.random() < self.negative_prob:
                caption, roll = None, self.rng.random()
                if roll < self.relation_prob:
                    caption = self._swapped_link(index)
                elif roll < self.relation_prob + self.hard_prob:
                    caption = self._swapped_phrase(index)
                word_ids = self._other_caption(index) if caption is None else caption
                word_labels = np.full_like(word_ids, -100)
                itm.append(0)
            elif self.clean_prob and self.rng.random() < self.clean_prob / (1 - self.negative_prob):
                word_ids = pair.input_ids  # matched, unmasked: teaches ITM alone
                itm.append(1)
            elif self.rng.random() < self.mrfr_share:
                word_ids = pair.input_ids
                region_mask = (self.rng.random(len(pair.feats)) < self.mask_prob).astype(np.int64)
                if not region_mask.any():  # every MRFR pair teaches something
                    region_mask[int(self.rng.integers(len(region_mask)))] = 1
                itm.append(1)
            else:
                word_ids, word_labels = self._mask_words(pair)
                itm.append(1)
            itm_rows.append(
                int(not self.clean_prob or not (region_mask.any() or (word_labels != -100).any()))
            )
            ids.append(word_ids)
            labels.append(word_labels)
            feats.append(pair.feats * (1 - region_mask[:, None]))
            targets.append(pair.feats)
            masked.append(region_mask[:, None].astype(np.float32))
            boxes.append(pair.boxes)
        width = pair.feats.shape[1]
        text, text_mask = pad_rows([i[:, None].astype(np.float32) for i in ids], 1)
        label_t, _ = pad_rows([la[:, None].astype(np.float32) for la in labels], 1)
        label_t = label_t.long()[..., 0]
        label_t[text_mask == 0] = -100
        feat_t, img_mask = pad_rows(feats, width)
        masked_t, _ = pad_rows(masked, 1)
        return {
            "input_ids": text.long()[..., 0],
            "attention_mask": text_mask,
            "mlm_labels": label_t,
            "img_feat": feat_t,
            "img_pos_feat": pad_rows(boxes, 7)[0],
            "img_mask": img_mask,
            "img_masked": masked_t.long()[..., 0],
            "img_target": pad_rows(targets, width)[0],
            "itm_labels": torch.tensor(itm),
            "itm_mask": torch.tensor(itm_rows),
        }
