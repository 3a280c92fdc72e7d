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
weakly supervised grounding. The stage costs no transformer forward: 1,000 steps take under a
minute on one CPU thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from vlprobe.models.regions import pad_rows
from vlprobe.models.uniter import UniterModel
from vlprobe.pretrain.data import Pair

TEMPERATURE = 0.05  # of the InfoNCE logits, in the stage and beside the joint objectives


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
        words = model.embed_text(ids)
    word_mask = text_mask.clone()
    for token in special:
        word_mask[ids == token] = 0
    feats, region_mask = pad_rows([p.feats for p in pairs], pairs[0].feats.shape[1])
    boxes, _ = pad_rows([p.boxes for p in pairs], 7)
    regions = model.embed_regions(feats, boxes)
    return words, word_mask, regions, region_mask


class DistinctImageBatches(Sampler[list[int]]):
    """``steps`` batches of pair indices, one caption of each of ``size`` different images.

    A caption's only positive is then its own image: two captions of one image in a batch
    would be each other's false negatives.
    """

    def __init__(self, pairs: Sequence[Pair], size: int, steps: int, seed: int) -> None:
        self.by_image: dict[str, list[int]] = {}
        for i, pair in enumerate(pairs):
            self.by_image.setdefault(pair.image_id, []).append(i)
        self.images = list(self.by_image)
        if len(self.images) < 2:
            raise ValueError("word-region contrastive learning needs at least two images")
        self.size, self.steps = min(size, len(self.images)), steps
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            chosen = self.rng.choice(len(self.images), size=self.size, replace=False)
            yield [int(self.rng.choice(self.by_image[self.images[i]])) for i in chosen]


class RegionGrounding(pl.LightningModule):
    """The stage as a Lightning module: Adam on the region embeddings, nothing else."""

    def __init__(
        self, model: UniterModel, special_ids: Sequence[int], lr: float, temperature: float
    ) -> None:
        super().__init__()
        self.model = model
        self.special = {int(t) for t in special_ids}
        self.lr, self.temperature = lr, temperature
        self.losses: list[float] = []
        self.step_values: dict[str, float] = {}  # this step's, for pretrain_log.csv

    def training_step(self, batch: list[Pair], _: int) -> torch.Tensor:
        words, word_mask, regions, region_mask = _batch(self.model, batch, self.special)
        loss = contrastive_loss(
            late_interaction(words, word_mask, regions, region_mask), self.temperature
        )
        self.log("contrastive", loss, prog_bar=True, batch_size=len(batch))
        self.losses.append(float(loss.detach()))
        self.step_values = {"contrastive": self.losses[-1], "loss": self.losses[-1]}
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.img_embeddings.parameters(), lr=self.lr)


def train_region_embeddings(
    model: UniterModel,
    pairs: Sequence[Pair],
    special_ids: Sequence[int],
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    temperature: float = TEMPERATURE,
    seed: int = 0,
    progress: bool = False,
    callbacks: Sequence[pl.Callback] = (),
) -> list[float]:
    """``steps`` Adam steps on ``model.img_embeddings`` alone; returns the loss of each step."""
    if steps == 0:
        return []
    batches = DistinctImageBatches(pairs, batch_size, steps, seed)
    stage = RegionGrounding(model, special_ids, lr, temperature)
    stage.train()  # Lightning keeps the mode it is given: dropout on while learning
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    trainer.fit(stage, DataLoader(pairs, batch_sampler=batches, collate_fn=list))
    return stage.losses
