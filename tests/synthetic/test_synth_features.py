"""BUTD features: a real TSV, detections tied to every gold box, attributes linearly decodable."""

from __future__ import annotations

import numpy as np

from vlprobe.data.alignment import iou_matrix
from vlprobe.data.region_features import read_butd_tsv
from vlprobe.synthetic import DemoDataPaths
from vlprobe.synthetic.features import (
    GEOMETRY,
    LATENT_CATEGORIES,
    build_region_features,
    geometry,
)
from vlprobe.synthetic.scenes import COLOURS, PREDICATES, Scene, sample_scenes


def _ridge(x: np.ndarray, y: np.ndarray, lam: float = 1.0) -> np.ndarray:
    a = np.c_[x, np.ones(len(x))]
    return np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y)


def _predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.c_[x, np.ones(len(x))] @ w


def test_tsv_round_trip(demo: DemoDataPaths, demo_scenes: list[Scene]) -> None:
    records = {r.image_id: r for r in read_butd_tsv(demo.features)}
    built, _ = build_region_features(demo_scenes, seed=0, feature_dim=64)
    assert sorted(records) == sorted(s.image_id for s in demo_scenes)
    for rec in built:
        got = records[rec.image_id]
        assert (got.width, got.height) == (rec.width, rec.height)
        np.testing.assert_array_equal(got.boxes, rec.boxes)
        np.testing.assert_array_equal(got.features, rec.features)
        assert got.features.dtype == np.float32 and got.features.shape[1] == 64
        assert (got.features >= 0).all()  # like real (post-ReLU) BUTD features


def test_every_gold_box_has_a_detection(demo_scenes: list[Scene]) -> None:
    records, sources = build_region_features(demo_scenes, seed=0, feature_dim=8)
    for scene, rec, src in zip(demo_scenes, records, sources, strict=True):
        kinds = [s.kind for s in src]
        assert kinds.count("scene") == 1 and 1 <= kinds.count("background") <= 3
        gold = np.array([o.box for o in scene.objects], dtype=np.float32)
        iou = iou_matrix(gold, rec.boxes)
        for obj in scene.objects:
            row = next(k for k, s in enumerate(src) if s.object_index == obj.index)
            assert iou[obj.index, row] >= 0.6
            assert (
                iou[obj.index].argmax() == row or iou[obj.index].max() - iou[obj.index, row] < 0.3
            )


def _objects(n_scenes: int, dim: int, seed: int = 5):
    scenes = sample_scenes(n_scenes, seed)
    records, sources = build_region_features(scenes, seed=seed, feature_dim=dim)
    x, geo, cat, col = [], [], [], []
    for rec, src in zip(records, sources, strict=True):
        g = geometry(rec.boxes, rec.width, rec.height)
        for k, s in enumerate(src):
            if s.kind == "object":
                x.append(rec.features[k])
                geo.append(g[k])
                cat.append(LATENT_CATEGORIES.index(s.category))
                col.append(list(COLOURS).index(s.colour))
    return np.array(x, np.float64), np.array(geo), np.array(cat), np.array(col)


def test_geometry_category_colour_linearly_decodable() -> None:
    x, geo, cat, col = _objects(80, 64)
    train = np.arange(len(x)) < int(0.75 * len(x))
    w = _ridge(x[train], geo[train])
    pred = _predict(w, x[~train])
    resid = ((pred - geo[~train]) ** 2).sum(0)
    total = ((geo[~train] - geo[~train].mean(0)) ** 2).sum(0)
    r2 = dict(zip(GEOMETRY, 1 - resid / total, strict=True))
    assert r2["center_x"] > 0.9 and r2["center_y"] > 0.9, r2
    assert min(r2.values()) > 0.75, r2
    for labels, k in ((cat, len(LATENT_CATEGORIES)), (col, len(COLOURS))):
        w = _ridge(x[train], np.eye(k)[labels[train]])
        assert (_predict(w, x[~train]).argmax(1) == labels[~train]).mean() > 0.9


def test_relations_linearly_predictable_from_pair_features() -> None:
    scenes = sample_scenes(150, 5)
    records, sources = build_region_features(scenes, seed=5, feature_dim=32)
    x, y = [], []
    for scene, rec, src in zip(scenes, records, sources, strict=True):
        row = {s.object_index: k for k, s in enumerate(src) if s.kind == "object"}
        for r in scene.relations:
            x.append(np.r_[rec.features[row[r.subject]], rec.features[row[r.object]]])
            y.append(PREDICATES.index(r.predicate))
    x, labels = np.array(x, np.float64), np.array(y)
    train = np.arange(len(x)) < int(0.75 * len(x))
    w = _ridge(x[train], np.eye(len(PREDICATES))[labels[train]], lam=10.0)
    accuracy = (_predict(w, x[~train]).argmax(1) == labels[~train]).mean()
    majority = np.bincount(labels).max() / len(labels)
    assert accuracy > 2 * majority, (accuracy, majority)
