"""Tie gold boxes (Flickr30k Entities, Visual Genome) to a model's input regions.

Models see detector regions, not gold boxes, so each gold box needs an input row: either the
detected box it overlaps most (``mode="iou"``) or a row appended for it (``mode="add"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from vlprobe.data.types import Box, RegionFeatures

TieMode = Literal["iou", "add"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) ``x1 y1 x2 y2`` boxes -> (N, M) float64.

    Coordinates are continuous (area = (x2 - x1) * (y2 - y1), no +1), matching ``Box.area``.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def tie_gold_boxes(
    gold: Sequence[Box],
    regions: RegionFeatures,
    mode: TieMode = "iou",
    threshold: float = 0.5,
) -> tuple[RegionFeatures, list[int | None]]:
    """Map each gold box to a row of the returned regions.

    ``"iou"``: the detected box with the highest IoU (lowest index on ties) if that IoU is
    ``>= threshold``, else ``None`` (the caller drops and counts it); the regions come back
    unchanged. ``"add"``: the gold boxes are appended as extra regions (identical boxes share one
    row) and each maps to its row. A detector never saw those boxes, so their feature row is an
    approximation: the IoU-weighted mean of the detected features overlapping the box, or the
    mean of all detected features when none overlaps (zeros when there are none).
    """
    boxes = np.stack([g.as_array() for g in gold]) if gold else np.zeros((0, 4), np.float32)
    iou = iou_matrix(boxes, regions.boxes)
    if mode == "iou":
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        ties: list[int | None] = []
        for row in iou:
            best = int(np.argmax(row)) if row.size else -1
            ties.append(best if best >= 0 and row[best] >= threshold else None)
        return regions, ties
    if mode != "add":
        raise ValueError(f"unknown tie mode {mode!r}; expected 'iou' or 'add'")

    feats = regions.features
    dim = feats.shape[1] if feats.ndim == 2 else 0
    fallback = feats.mean(axis=0) if len(feats) else np.zeros(dim, np.float32)
    rows: dict[Box, int] = {}
    new_boxes: list[np.ndarray] = []
    new_feats: list[np.ndarray] = []
    ties = []
    for g, weights in zip(gold, iou, strict=True):
        if g not in rows:
            rows[g] = len(regions.boxes) + len(new_boxes)
            total = weights.sum()
            new_feats.append((weights @ feats) / total if total > 0 else fallback)
            new_boxes.append(g.as_array())
        ties.append(rows[g])
    if not new_boxes:
        return regions, ties
    out = RegionFeatures(
        regions.image_id,
        regions.width,
        regions.height,
        np.concatenate([regions.boxes, np.stack(new_boxes)]).astype(np.float32),
        np.concatenate([feats.reshape(len(feats), dim), np.stack(new_feats)]).astype(np.float32),
    )
    return out, ties
