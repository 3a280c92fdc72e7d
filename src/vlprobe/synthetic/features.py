"""Synthetic bottom-up-attention region features, written as a real BUTD TSV.

A "detector" returns each gold box slightly jittered (IoU with gold well above 0.5), a
whole-image box for the setting (street / park / beach) and 1-3 background boxes. Each feature
row is ``relu(offset + W @ z + noise)`` where ``z`` stacks one-hots of category, colour and size,
the normalised box geometry (centre x, centre y, width, height, area) and a small per-object
appearance vector. ``W`` is a fixed random projection for the seed and the offset keeps the
ReLU almost never active, so every attribute is linearly decodable, like real BUTD features
(non-negative) are for their objects' attributes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlprobe.data.region_features import write_butd_tsv
from vlprobe.data.types import RegionFeatures
from vlprobe.synthetic.scenes import ALL_CATEGORIES, COLOURS, SIZES, Scene, size_of

BACKGROUND = "background"
LATENT_CATEGORIES: tuple[str, ...] = (*ALL_CATEGORIES, BACKGROUND)
GEOMETRY: tuple[str, ...] = ("center_x", "center_y", "width", "height", "area")
APPEARANCE_DIM = 8
LATENT_DIM = len(LATENT_CATEGORIES) + len(COLOURS) + len(SIZES) + len(GEOMETRY) + APPEARANCE_DIM

_WEIGHT_SCALE = 0.35
_OFFSET = 1.5
_NOISE = 0.15
_JITTER = 0.05
_GEOMETRY_GAIN = 5.0  # geometry outweighs the noise even when feature_dim is small
_GEOMETRY_MEAN = np.array([0.5, 0.5, 0.25, 0.25, 0.08])


@dataclass(frozen=True)
class RegionSource:
    """What a synthetic region shows: ``kind`` is object / scene / background."""

    kind: str
    category: str
    colour: str
    object_index: int | None = None  # SceneObject.index for kind == "object"


def geometry(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) pixel boxes -> (N, 5) normalised centre x, centre y, width, height, area."""
    box = np.asarray(box, dtype=np.float64).reshape(-1, 4)
    w = (box[:, 2] - box[:, 0]) / width
    h = (box[:, 3] - box[:, 1]) / height
    cx = (box[:, 0] + box[:, 2]) / (2 * width)
    cy = (box[:, 1] + box[:, 3]) / (2 * height)
    return np.stack([cx, cy, w, h, w * h], axis=1)


def projection(seed: int, feature_dim: int) -> np.ndarray:
    """The fixed (LATENT_DIM, feature_dim) map from attributes to feature space."""
    rng = np.random.default_rng([seed, 0xFEA7])
    return rng.normal(0.0, _WEIGHT_SCALE, size=(LATENT_DIM, feature_dim))


def _latent(sources: Sequence[RegionSource], geo: np.ndarray, sizes: Sequence[str]) -> np.ndarray:
    n = len(sources)
    z = np.zeros((n, LATENT_DIM))
    c0 = len(LATENT_CATEGORIES)
    s0 = c0 + len(COLOURS)
    g0 = s0 + len(SIZES)
    colours = list(COLOURS)
    for i, (src, size) in enumerate(zip(sources, sizes, strict=True)):
        z[i, LATENT_CATEGORIES.index(src.category)] = 1.0
        z[i, c0 + colours.index(src.colour)] = 1.0
        z[i, s0 + SIZES.index(size)] = 1.0
    z[:, g0 : g0 + len(GEOMETRY)] = _GEOMETRY_GAIN * (geo - _GEOMETRY_MEAN)
    return z


def _jitter(rng: np.random.Generator, box: Sequence[float], width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = box
    dx, dy = _JITTER * (x2 - x1), _JITTER * (y2 - y1)
    j = rng.uniform(-1.0, 1.0, size=4)
    out = [x1 + j[0] * dx, y1 + j[1] * dy, x2 + j[2] * dx, y2 + j[3] * dy]
    out = [min(max(out[0], 0.0), width - 1.0), min(max(out[1], 0.0), height - 1.0), *out[2:]]
    out[2] = min(max(out[2], out[0] + 1.0), float(width))
    out[3] = min(max(out[3], out[1] + 1.0), float(height))
    return out


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, iw) * max(0.0, ih)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _detections(
    scene: Scene, rng: np.random.Generator
) -> tuple[np.ndarray, list[RegionSource], np.ndarray]:
    """Boxes (shuffled), what each shows, and their latent attribute vectors ``z``."""
    w, h = scene.width, scene.height
    colours = list(COLOURS)
    boxes: list[list[float]] = []
    sources: list[RegionSource] = []
    for obj in scene.objects:
        boxes.append(_jitter(rng, obj.box, w, h))
        sources.append(RegionSource("object", obj.category, obj.colour, obj.index))
    boxes.append(_jitter(rng, (0, 0, w, h), w, h))
    sources.append(RegionSource("scene", scene.setting, colours[int(rng.integers(len(colours)))]))
    gold = [list(map(float, o.box)) for o in scene.objects]
    wanted = int(rng.integers(1, 4))
    for _ in range(40):
        if wanted == 0:
            break
        bw, bh = rng.uniform(0.08, 0.3) * w, rng.uniform(0.08, 0.3) * h
        x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        box = [x1, y1, x1 + bw, y1 + bh]
        if all(_iou(box, g) < 0.3 for g in gold):
            boxes.append(box)
            sources.append(
                RegionSource("background", BACKGROUND, colours[int(rng.integers(len(colours)))])
            )
            wanted -= 1
    order = rng.permutation(len(boxes))
    box_arr = np.asarray(boxes, dtype=np.float64)[order]
    sources = [sources[i] for i in order]
    z = _latent(sources, geometry(box_arr, w, h), [size_of(b, w, h) for b in box_arr])
    z[:, -APPEARANCE_DIM:] = rng.normal(0.0, 0.5, size=(len(sources), APPEARANCE_DIM))
    return box_arr, sources, z


def build_region_features(
    scenes: Sequence[Scene], seed: int = 0, feature_dim: int = 2048
) -> tuple[list[RegionFeatures], list[list[RegionSource]]]:
    """Region features for every scene plus, per region, what it shows (for tests).

    All scenes' latents go through one matrix product: fast, and the same numbers per seed.
    """
    if feature_dim < 1:
        raise ValueError(f"feature_dim must be positive, got {feature_dim}")
    rng = np.random.default_rng([seed, 0xB07D])
    detections = [_detections(scene, rng) for scene in scenes]
    z = np.concatenate([d[2] for d in detections])
    noise = np.random.default_rng([seed, 0x7015E]).standard_normal(
        (len(z), feature_dim), dtype=np.float32
    )
    feats = (z @ projection(seed, feature_dim) + _OFFSET).astype(np.float32)
    feats = np.maximum(feats + _NOISE * noise, 0.0)
    records, start = [], 0
    for scene, (boxes, _, zs) in zip(scenes, detections, strict=True):
        rows = feats[start : start + len(zs)]
        start += len(zs)
        records.append(
            RegionFeatures(
                scene.image_id, scene.width, scene.height, boxes.astype(np.float32), rows
            )
        )
    return records, [d[1] for d in detections]


def write_features(
    path: str | os.PathLike[str], scenes: Sequence[Scene], seed: int = 0, feature_dim: int = 2048
) -> Path:
    """Write ``path`` as a header-less BUTD TSV (float32 boxes and features, base64)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records, _ = build_region_features(scenes, seed, feature_dim)
    write_butd_tsv(path, records)
    return path
