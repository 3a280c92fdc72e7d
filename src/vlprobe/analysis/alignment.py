"""Cross-modal interaction read off attention heads (VALUE task 3, Cao et al. 2020).

``alignment_accuracy`` treats every head as a zero-parameter classifier, after Clark et al.
(2019, "What does BERT look at?"): a phrase is resolved correctly when the region it attends to
most is one of its coreferent (gold) regions. Ties share the credit (``argmax_credit``): float16
attention rounds nearby values together, and giving a tie to the first candidate would favour
whichever region comes first. ``cross_modal_share`` is the fraction of a head's
attention that crosses between text and image, the per-head statistic behind "a subset of heads
is specialised for cross-modal interaction".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def argmax_credit(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per-head credit of "the highest-scoring candidate is gold", ties counted fractionally.

    Args:
        scores: ``(R, ...)`` one row per candidate (e.g. ``(R, A, H)`` attention).
        gold: ``(R,)`` bool.

    Returns:
        ``scores.shape[1:]``: the fraction of the maximal candidates that are gold (1 or 0
        without ties): the expected accuracy of breaking ties uniformly at random.
    """
    s = np.asarray(scores)
    gold = np.asarray(gold, dtype=bool).reshape(-1)
    if s.shape[0] != gold.shape[0] or s.shape[0] == 0:
        raise ValueError(f"scores {s.shape} and gold {gold.shape} need the same, non-zero length")
    top = s == s.max(axis=0, keepdims=True)  # (R, ...)
    g = gold.reshape((-1,) + (1,) * (s.ndim - 1))
    return (top & g).sum(axis=0) / top.sum(axis=0)


def alignment_accuracy(offset: np.ndarray, attention: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per-head accuracy of "the most attended candidate region is gold".

    Args:
        offset: ``(P+1,)``; phrase ``p`` owns candidate rows ``[off[p], off[p+1])``.
        attention: ``(K, A, H)`` phrase->region attention per candidate row.
        gold: ``(K,)`` bool, the row's region is in the phrase's chain.

    Returns:
        ``(A, H)`` accuracy over the phrases with at least one gold candidate (phrases without
        one cannot be scored); ties share the credit (:func:`argmax_credit`). NaN if no phrase
        qualifies.
    """
    off = np.asarray(offset, dtype=np.int64).reshape(-1)
    att = np.asarray(attention)
    gold = np.asarray(gold, dtype=bool).reshape(-1)
    if att.ndim != 3 or att.shape[0] != gold.shape[0] or off[-1] != gold.shape[0]:
        raise ValueError("offset, attention (K, A, H) and gold (K,) disagree")
    correct = np.zeros(att.shape[1:], dtype=np.float64)
    scored = 0
    for p in range(len(off) - 1):
        a, b = int(off[p]), int(off[p + 1])
        if b <= a or not gold[a:b].any():
            continue
        correct += argmax_credit(att[a:b], gold[a:b])
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
