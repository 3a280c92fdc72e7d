"""Word-region contrastive learning: the score and loss by hand, and a planted grounding."""

from __future__ import annotations

import math

import numpy as np
import torch

from vlprobe.models.uniter import UniterConfig, build_random
from vlprobe.pretrain.contrastive import (
    contrastive_loss,
    late_interaction,
    train_region_embeddings,
)
from vlprobe.pretrain.data import Pair


def test_late_interaction_is_the_mean_over_words_of_the_best_region() -> None:
    # one caption: two words and a padded third; two images, the second with a padded region
    words = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    word_mask = torch.tensor([[1, 1, 0]])
    regions = torch.tensor([[[3.0, 0.0], [1.0, 1.0]], [[-1.0, 0.0], [0.0, 1.0]]])
    region_mask = torch.tensor([[1, 1], [1, 0]])
    scores = late_interaction(words, word_mask, regions, region_mask)
    # image 0: word 0 best cosine 1 (region 0), word 1 best 1/sqrt(2) (region 1)
    # image 1: only region 0 (-1, 0) counts: word 0 cosine -1, word 1 cosine 0
    expected = torch.tensor([[(1 + 1 / math.sqrt(2)) / 2, (-1 + 0) / 2]])
    torch.testing.assert_close(scores, expected)


def test_contrastive_loss_is_symmetric_infonce() -> None:
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # every row and column: -log(e / (e + 1)) = log(1 + e^-1)
    expected = math.log(1 + math.exp(-1))
    assert abs(contrastive_loss(scores, temperature=1.0).item() - expected) < 1e-6
    # a temperature of 0.5 doubles the margin: log(1 + e^-2)
    assert abs(contrastive_loss(scores, 0.5).item() - math.log(1 + math.exp(-2))) < 1e-6


CATEGORIES = 6
WORD0 = 10  # word id of category c: WORD0 + c
FEATURE_DIM = 24


def _planted_pairs(n_images: int, seed: int) -> tuple[list[Pair], list[np.ndarray]]:
    """Images of 3 regions of distinct categories; the caption names 2 of them, in any order.

    A region's features are its category's random direction plus noise, its box is random:
    which word goes with which region can only be learned from which words and features
    occur together. Returns the pairs and each image's region categories.
    """
    rng = np.random.default_rng(seed)
    directions = np.random.default_rng(99).normal(size=(CATEGORIES, FEATURE_DIM))
    pairs, categories = [], []
    for i in range(n_images):
        shown = rng.choice(CATEGORIES, size=3, replace=False)
        named = rng.permutation(shown[:2])
        feats = directions[shown] + 0.3 * rng.normal(size=(3, FEATURE_DIM))
        pairs.append(
            Pair(
                image_id=f"img{i}",
                input_ids=np.array([1, *(WORD0 + named), 2]),  # [CLS] w w [SEP]
                feats=feats.astype(np.float32),
                boxes=rng.uniform(size=(3, 7)).astype(np.float32),
            )
        )
        categories.append(shown)
    return pairs, categories


def _grounding_accuracy(model, pairs: list[Pair], categories: list[np.ndarray]) -> float:
    """Share of named words whose most similar region (cosine, embedding space) is theirs."""
    from vlprobe.pretrain.contrastive import _batch

    model.eval()
    with torch.no_grad():
        words, _, regions, _ = _batch(model, pairs, {1, 2})
    hits = []
    for b, (pair, shown) in enumerate(zip(pairs, categories, strict=True)):
        cos = (
            torch.nn.functional.normalize(words[b, 1:3], dim=-1)
            @ torch.nn.functional.normalize(regions[b], dim=-1).T
        )
        for w, best in zip(pair.input_ids[1:3], cos.argmax(-1).tolist(), strict=True):
            hits.append(shown[best] == w - WORD0)
    return float(np.mean(hits))


def test_training_grounds_words_in_their_regions_from_captions_alone() -> None:
    torch.manual_seed(0)
    config = UniterConfig(
        vocab_size=32,
        hidden_size=64,  # 32 random word vectors can lie close enough to swap two words
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        img_dim=FEATURE_DIM,
    )
    model = build_random(config)
    train, _ = _planted_pairs(200, seed=0)
    test, test_categories = _planted_pairs(100, seed=1)
    before = _grounding_accuracy(model, test, test_categories)
    text_side = {k: v.clone() for k, v in model.state_dict().items() if "img_" not in k}
    losses = train_region_embeddings(model, train, [0, 1, 2], steps=300, batch_size=32, lr=3e-3)
    after = _grounding_accuracy(model, test, test_categories)
    # captions naming the same two categories are alike, so the loss cannot reach 0
    assert len(losses) == 300 and np.mean(losses[-20:]) < np.mean(losses[:20]) - 0.5
    assert before < 0.6 and after > 0.95, (before, after)  # chance: 1/3
    for key, value in model.state_dict().items():  # only the region embeddings learned
        if "img_" not in key:
            assert torch.equal(value, text_side[key]), key
