"""uniter-mini's own heads on held-out captions: does pre-training teach what it claims?

On captions of Flickr30k Entities' validation images (never pre-trained on,
:func:`~vlprobe.pretrain.data.held_out_pairs`), each chosen caption is read twice, with its
own image's regions and with another image's:

- **ITM**: the matched pair should be called matched and the other mismatched. The caption is
  the same in both, so nothing in the text alone can tell them apart: only the regions can.
  ``itm_acc`` is the accuracy over both pairs, ``itm_acc_matched`` / ``itm_acc_mismatched``
  per class (a head that answers one class always has 1 and 0), ``itm_ranking`` the share of
  captions whose matched pair scores higher than its mismatched pair (0.5: chance).
- **Masked-phrase MLM**: one grounded phrase's tokens are all masked; ``mlm_true_image`` and
  ``mlm_other_image`` are the token accuracies with the true and another image's regions. The
  gap is what the regions add over the text around the phrase.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vlprobe.models.regions import pad_rows
from vlprobe.pretrain.data import Pair


def evaluate(
    module: Any,
    pairs: Sequence[Pair],
    mask_id: int,
    captions: int = 300,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Any]:
    """ITM and masked-phrase MLM of a ``UniterPretraining`` module on up to ``captions``."""
    images = sorted({p.image_id for p in pairs})
    if len(images) < 2:
        return {"captions": 0, "note": "fewer than two held-out images: nothing evaluated"}
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(pairs), size=min(captions, len(pairs)), replace=False))
    others = [_other_image(pairs, int(i), rng) for i in chosen]
    texts = [pairs[i].input_ids for i in chosen]
    masked, labels = zip(*(_mask_phrase(pairs[i], mask_id, rng) for i in chosen), strict=True)
    own = [pairs[i] for i in chosen]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            p_own = _itm(module, texts, own, batch_size)
            p_other = _itm(module, texts, others, batch_size)
            hit_own, n = _mlm(module, masked, labels, own, batch_size)
            hit_other, _ = _mlm(module, masked, labels, others, batch_size)
    finally:
        module.train(was_training)
    return {
        "split": "val",
        "captions": len(chosen),
        "images": len({p.image_id for p in own}),
        "itm_acc": round(float(np.mean([*(p_own > 0.5), *(p_other <= 0.5)])), 4),
        "itm_acc_matched": round(float(np.mean(p_own > 0.5)), 4),
        "itm_acc_mismatched": round(float(np.mean(p_other <= 0.5)), 4),
        "itm_ranking": round(float(np.mean(p_own > p_other)), 4),
        "mlm_tokens": n,
        "mlm_true_image": round(hit_own / max(n, 1), 4),
        "mlm_other_image": round(hit_other / max(n, 1), 4),
    }


def _other_image(pairs: Sequence[Pair], index: int, rng: np.random.Generator) -> Pair:
    while True:
        other = pairs[int(rng.integers(len(pairs)))]
        if other.image_id != pairs[index].image_id:
            return other


def _mask_phrase(pair: Pair, mask_id: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The caption with one grounded phrase all [MASK] (labels -100 elsewhere)."""
    ids, labels = pair.input_ids.copy(), np.full_like(pair.input_ids, -100)
    if pair.phrases:
        start, end, _ = pair.phrases[int(rng.integers(len(pair.phrases)))]
        labels[start:end] = ids[start:end]
        ids[start:end] = mask_id
    return ids, labels


def _forward(module: Any, texts: Sequence[np.ndarray], images: Sequence[Pair]) -> tuple:
    ids, text_mask = pad_rows([t[:, None].astype(np.float32) for t in texts], 1)
    feats, img_mask = pad_rows([p.feats for p in images], images[0].feats.shape[1])
    out = module.uniter(
        input_ids=ids.long()[..., 0],
        attention_mask=text_mask,
        img_feat=feats,
        img_pos_feat=pad_rows([p.boxes for p in images], 7)[0],
        img_mask=img_mask,
    )
    return out, ids.shape[1]


def _itm(module: Any, texts: Sequence[np.ndarray], images: Sequence[Pair], size: int) -> np.ndarray:
    """P(matched) of each caption with each image."""
    probs = []
    for s in range(0, len(texts), size):
        out, _ = _forward(module, texts[s : s + size], images[s : s + size])
        probs.append(module.itm_logits(out).softmax(-1)[:, 1])
    return torch.cat(probs).numpy()


def _mlm(
    module: Any,
    texts: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    images: Sequence[Pair],
    size: int,
) -> tuple[int, int]:
    """Masked tokens predicted right, and masked tokens."""
    hits = total = 0
    for s in range(0, len(texts), size):
        out, n_text = _forward(module, texts[s : s + size], images[s : s + size])
        gold, _ = pad_rows([la[:, None].astype(np.float32) for la in labels[s : s + size]], 1)
        gold = gold.long()[..., 0]
        gold[gold == 0] = -100  # padding (no real label is token 0, [PAD])
        selected = gold != -100
        if selected.any():
            words = out.last_hidden_state[:, :n_text][selected]
            hits += int((module.cls(words).argmax(-1) == gold[selected]).sum())
            total += int(selected.sum())
    return hits, total
