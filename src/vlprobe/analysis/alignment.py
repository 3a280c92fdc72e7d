"""Cross-modal interaction read off attention heads (VALUE task 3, Cao et al. 2020).

``alignment_accuracy`` treats every head as a zero-parameter classifier, after Clark et al.
(2019, "What does BERT look at?"): a phrase is resolved correctly when the region it attends to
most is one of its coreferent (gold) regions. ``cross_modal_share`` is the fraction of a head's
attention that crosses between text and image, the per-head statistic behind "a subset of heads
is specialised for cross-modal interaction".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def alignment_accuracy(offset: np.ndarray, attention: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per-head accuracy of "the most attended candidate region is gold".

    Args:
        offset: ``(P+1,)``; phrase ``p`` owns candidate rows ``[off[p], off[p+1])``.
        attention: ``(K, A, H)`` phrase->region attention per candidate row.
        gold: ``(K,)`` bool, the row's region is in the phrase's chain.

    Returns:
        ``(A, H)`` accuracy over the phrases with at least one gold candidate (phrases without
        one cannot be scored); ties go to the first maximal row. NaN if no phrase qualifies.
    """
    off = np.asarray(offset, dtype=np.int64).reshape(-1)
    att = np.asarray(attention)
    gold = np.asarray(gold, dtype=bool).reshape(-1)
    if att.ndim != 3 or att.shape[0] != gold.shape[0] or off[-1] != gold.shape[0]:
        raise ValueError("offset, attention (K, A, H) and gold (K,) disagree")
    correct = np.zeros(att.shape[1:], dtype=np.int64)
    scored = 0
    for p in range(len(off) - 1):
        a, b = int(off[p]), int(off[p + 1])
        if b <= a or not gold[a:b].any():
            continue
        best = np.argmax(att[a:b], axis=0)  # (A, H), first max on ties
        correct += gold[a:b][best]
        scored += 1
    if scored == 0:
        return np.full(att.shape[1:], np.nan)
    return correct / scored


def cross_modal_share(maps: Sequence[np.ndarray], modalities: Sequence[np.ndarray]) -> np.ndarray:
    """Per-head share of attention mass that crosses modality, averaged over examples.

    For one example with maps ``(A, H, T, T)`` (query rows, key columns) and modality ``(T,)``,
    the share is (text->image + image->text mass) / all mass. Examples without both modalities
    (text-only inputs) are skipped; NaN if none is left.
    """
    if len(maps) != len(modalities):
        raise ValueError("need one modality vector per attention map")
    shares = []
    for m, mod in zip(maps, modalities, strict=True):
        m = np.asarray(m, dtype=np.float64)
        mod = np.asarray(mod).reshape(-1)
        if m.ndim != 4 or m.shape[-2:] != (len(mod), len(mod)):
            raise ValueError(f"map {m.shape} does not match modality of length {len(mod)}")
        if len(np.unique(mod)) < 2:
            continue
        cross = mod[:, None] != mod[None, :]  # (T, T)
        total = m.sum(axis=(-2, -1))
        with np.errstate(divide="ignore", invalid="ignore"):
            shares.append((m * cross).sum(axis=(-2, -1)) / total)
    if not shares:
        shape = np.asarray(maps[0]).shape[:2] if len(maps) else (0, 0)
        return np.full(shape, np.nan)
    return np.mean(shares, axis=0)


def top_heads(matrix: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The ``k`` largest cells of an ``(A, H)`` matrix as ``(layer, head, value)``, best first.

    NaN cells are ignored; equal values keep layer-major order.
    """
    mat = np.asarray(matrix, dtype=np.float64)
    if mat.ndim != 2:
        raise ValueError(f"expected an (A, H) matrix, got {mat.shape}")
    flat = mat.reshape(-1)
    valid = np.flatnonzero(~np.isnan(flat))
    order = valid[np.argsort(-flat[valid], kind="stable")][: max(k, 0)]
    heads = mat.shape[1]
    return [(int(i // heads), int(i % heads), float(flat[i])) for i in order]
