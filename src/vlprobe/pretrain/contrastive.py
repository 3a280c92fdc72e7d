"""Word-region contrastive learning of the region embeddings (token-wise, as in FILIP).

The region side of uniter-mini starts random while its text side speaks MiniLM's language, so
at first no head can find the region a word names: a key computed from a random projection of
the detector features has nothing in common with a word's key. This stage trains the region
embeddings alone, before the joint objectives, so that an image's regions land near the words
of its own captions in the embedding space the first layer reads: a caption scores an image
by the mean, over its words, of the word's best cosine similarity to any of the image's
regions (FILIP's token-wise late interaction, Yao et al. 2022), and InfoNCE over a batch of
images teaches the embeddings which region features go with which words. Only caption-image
pairs are used, never a phrase's box: the alignment has to come from co-occurrence, as in
weakly supervised grounding. The stage costs no transformer forward, so thousands of steps
take seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vlprobe.models.regions import pad_rows
from vlprobe.models.uniter import UniterModel
from vlprobe.pretrain.data import Pair


def late_interaction(
    words: torch.Tensor, word_mask: torch.Tensor, regions: torch.Tensor, region_mask: torch.Tensor
) -> torch.Tensor:
    """(B_captions, B_images): mean over a caption's words of the best region cosine."""
    cos = torch.einsum(
        "ctd,ird->citr", F.normalize(words, dim=-1), F.normalize(regions, dim=-1)
    )  # (C, I, T, R)
    cos = cos.masked_fill(region_mask[None, :, None, :] == 0, -2.0)
    best = cos.max(-1).values  # (C, I, T)
    weights = word_mask[:, None, :].to(best.dtype)
    return (best * weights).sum(-1) / weights.sum(-1).clamp(min=1)


def contrastive_loss(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: caption ``b`` belongs to image ``b``."""
    logits = scores / temperature
    target = torch.arange(len(scores), device=scores.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _batch(
    model: UniterModel, pairs: Sequence[Pair], special: set[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, text_mask = pad_rows([p.input_ids[:, None].astype(np.float32) for p in pairs], 1)
    ids = ids.long()[..., 0]
    with torch.no_grad():  # the text side is the target, it does not move
        words = model.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
        image_type = model.embeddings.token_type_embeddings.weight[1]
    word_mask = text_mask.clone()
    for token in special:
        word_mask[ids == token] = 0
    feats, region_mask = pad_rows([p.feats for p in pairs], pairs[0].feats.shape[1])
    boxes, _ = pad_rows([p.boxes for p in pairs], 7)
    regions = model.img_embeddings(feats, boxes, image_type.expand(*feats.shape[:2], -1))
    return words, word_mask, regions, region_mask


def train_region_embeddings(
    model: UniterModel,
    pairs: Sequence[Pair],
    special_ids: Sequence[int],
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    temperature: float = 0.05,
    seed: int = 0,
) -> list[float]:
    """``steps`` Adam steps on ``model.img_embeddings`` alone; returns the loss of each step.

    A batch holds one caption of each of ``batch_size`` different images, so the only
    positive of a caption is its own image.
    """
    by_image: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        by_image.setdefault(pair.image_id, []).append(i)
    images = list(by_image)
    if len(images) < 2:
        raise ValueError("word-region contrastive learning needs at least two images")
    size = min(batch_size, len(images))
    rng = np.random.default_rng(seed)
    params = list(model.img_embeddings.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    special = set(int(t) for t in special_ids)
    was_training = model.training
    model.train()
    losses = []
    try:
        for _ in range(steps):
            chosen = rng.choice(len(images), size=size, replace=False)
            batch = [pairs[int(rng.choice(by_image[images[i]]))] for i in chosen]
            words, word_mask, regions, region_mask = _batch(model, batch, special)
            loss = contrastive_loss(
                late_interaction(words, word_mask, regions, region_mask), temperature
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    finally:
        model.train(was_training)
    return losses
