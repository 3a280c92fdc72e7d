"""Modality importance (VALUE task 2, Cao et al. 2020).

For layer a and head h, ``I(M, a, h) = sum_{i in M} attn([CLS] -> i)``, averaged over the data
set, for M = text and M = image. Regions usually outnumber words (36-100 vs 10-20), so raw mass
favours whichever modality has more tokens; the per-token normalisation divides each example's
mass by its token count in that modality before averaging.

[CLS] is a text token (modality 0): in the paper's definition its attention to itself, and to
[SEP], is in the text mass and both are counted in ``n_text``. In BERT-initialised models much
of [CLS]'s attention parks on [CLS] and [SEP] (Clark et al. 2019), so the ``content`` measures
drop the special tokens from the text side: the share of [CLS]'s attention to words vs regions.
"""

from __future__ import annotations

import numpy as np


def modality_importance(
    cls_mass: np.ndarray,
    n_text: np.ndarray,
    n_image: np.ndarray,
    special_mass: np.ndarray,
    n_special: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-head [CLS] attention on text vs image (``attention/cls_mass``).

    Args:
        cls_mass: ``(E, A, H, 2)``: [CLS] attention summed over text ``[..., 0]`` and image
            ``[..., 1]`` tokens.
        n_text, n_image: ``(E,)`` token counts per modality ([CLS] and [SEP] count as text).
        special_mass: ``(E, A, H)``: the part of the text mass on special tokens ([CLS], [SEP]).
        n_special: ``(E,)`` special text tokens per example.

    Returns:
        ``(A, H)`` arrays: ``text``, ``image`` (mean mass); ``text_share`` = text / (text +
        image); ``text_per_token``, ``image_per_token`` (mean of mass / count, over the examples
        that have tokens of that modality; NaN if none); ``text_share_normalised`` =
        text_per_token / (text_per_token + image_per_token): 0.5 means [CLS] attends to a text
        token and an image token equally on average. The same four measures over content
        tokens only (specials removed from text): ``content_text``, ``content_text_share``,
        ``content_text_per_token``, ``content_text_share_normalised``.
    """
    mass = np.asarray(cls_mass, dtype=np.float64)
    if mass.ndim != 4 or mass.shape[-1] != 2:
        raise ValueError(f"cls_mass must be (E, A, H, 2), got {mass.shape}")
    counts = np.stack([np.asarray(n_text), np.asarray(n_image)], axis=-1).astype(np.float64)
    if counts.shape != (mass.shape[0], 2):
        raise ValueError("n_text / n_image must have one entry per example")
    special = np.asarray(special_mass, dtype=np.float64)
    if special.shape != mass.shape[:-1] or np.shape(n_special) != (mass.shape[0],):
        raise ValueError("special_mass must be (E, A, H) and n_special (E,)")
    paper = _shares(mass, counts)
    content_mass = np.stack([np.clip(mass[..., 0] - special, 0, None), mass[..., 1]], axis=-1)
    content_counts = counts - np.stack([np.asarray(n_special), np.zeros(len(counts))], axis=-1)
    content = _shares(content_mass, content_counts)
    return {
        "text": paper["text"],
        "image": paper["image"],
        "text_share": paper["share"],
        "text_per_token": paper["text_per_token"],
        "image_per_token": paper["image_per_token"],
        "text_share_normalised": paper["share_normalised"],
        "content_text": content["text"],
        "content_text_share": content["share"],
        "content_text_per_token": content["text_per_token"],
        "content_text_share_normalised": content["share_normalised"],
    }


def _shares(mass: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Mean mass, share and per-token share of ``(E, A, H, 2)`` mass with ``(E, 2)`` counts."""
    means = mass.mean(axis=0)  # (A, H, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_token = mass / counts[:, None, None, :]  # (E, A, H, 2)
    per_token[np.broadcast_to((counts == 0)[:, None, None, :], per_token.shape)] = np.nan
    per_token_mean = np.full(means.shape, np.nan)
    for m in range(2):
        if np.any(counts[:, m] > 0):
            per_token_mean[..., m] = np.nanmean(per_token[..., m], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = means[..., 0] / means.sum(axis=-1)
        share_norm = per_token_mean[..., 0] / per_token_mean.sum(axis=-1)
    return {
        "text": means[..., 0],
        "image": means[..., 1],
        "share": share,
        "text_per_token": per_token_mean[..., 0],
        "image_per_token": per_token_mean[..., 1],
        "share_normalised": share_norm,
    }
