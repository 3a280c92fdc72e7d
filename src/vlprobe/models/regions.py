"""Region inputs (detector features and boxes) checked, normalised and padded into a batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vlprobe.models.base import ModelInput


def num_regions(inp: ModelInput) -> int:
    """Regions of one input; 0 means a text-only input."""
    return 0 if inp.region_features is None else int(np.asarray(inp.region_features).shape[0])


def check_features(inp: ModelInput, feature_dim: int, model: str) -> np.ndarray:
    """The (N, feature_dim) float32 features; a clear error when detector and model differ."""
    feats = np.asarray(inp.region_features, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[1] != feature_dim:
        raise ValueError(
            f"{model} expects region features of shape (N, {feature_dim}) "
            f"(config feature dim), got {tuple(feats.shape)}"
        )
    return feats


def normalised_boxes(inp: ModelInput) -> np.ndarray:
    """Pixel boxes as (x1/w, y1/h, x2/w, y2/h), the 4-d box input LXMERT was trained on."""
    n = num_regions(inp)
    if inp.region_boxes is None or inp.image_size is None:
        raise ValueError("region boxes and image_size are needed to normalise region positions")
    boxes = np.asarray(inp.region_boxes, dtype=np.float32).reshape(-1, 4)
    if boxes.shape[0] != n:
        raise ValueError(f"{n} region features but {boxes.shape[0]} boxes")
    width, height = inp.image_size
    scale = np.array([width, height, width, height], dtype=np.float32)
    return boxes / scale


def pad_rows(rows: Sequence[np.ndarray], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (n_b, width) arrays into (B, max n_b, width) zeros-padded, plus a (B, N) 0/1 mask."""
    longest = max((r.shape[0] for r in rows), default=0)
    out = np.zeros((len(rows), longest, width), dtype=np.float32)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for b, r in enumerate(rows):
        out[b, : r.shape[0]] = r
        mask[b, : r.shape[0]] = 1
    return torch.from_numpy(out), torch.from_numpy(mask)
