"""The demo's relation identification is learnable by VALUE's default linear probe.

Relatedness depends mainly on the two objects' categories (additive subject and object
affinities), so logistic regression on ``[subject features; object features]`` of the detections
``build_vg_examples`` ties to the objects separates related from unrelated pairs on held-out
images; the predicate stays linearly predictable too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from vlprobe.data.builders import build_vg_examples
from vlprobe.data.region_features import load_region_features
from vlprobe.synthetic import make_demo_data

PROBE_ARGS = dict(scenes=300, seed=0, feature_dim=128, image_size=128, senteval_per_task=40)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Every sampled pair of the 300-scene demo: features, related flag, predicate, split."""
    root: Path = tmp_path_factory.mktemp("value_mini_probe")
    paths = make_demo_data(root, render_images=False, **PROBE_ARGS)
    examples = build_vg_examples(paths.visual_genome, load_region_features(paths.features))
    x, predicate, split = [], [], []
    for ex in examples:
        feats = ex.inputs.region_features
        assert feats is not None
        for rel in ex.relations:
            s, o = ex.regions[rel.subject].region_index, ex.regions[rel.object].region_index
            x.append(np.concatenate([feats[s], feats[o]]))
            predicate.append(rel.predicate or "")
            split.append(ex.split)
    pred = np.array(predicate)
    return {
        "x": np.array(x, dtype=np.float64),
        "related": pred != "",
        "predicate": pred,
        "train": np.array(split) == "train",
    }


def test_identification_is_linearly_learnable(pairs: dict[str, np.ndarray]) -> None:
    x, y, train = pairs["x"], pairs["related"], pairs["train"]
    held_out = ~train
    assert held_out.sum() > 300 and train.sum() > 2 * held_out.sum()
    assert abs(y[held_out].mean() - 0.5) < 0.05  # near balanced: unrelated sampled 1:1
    # default C; the Newton solver converges in a few steps on these unscaled features
    probe = LogisticRegression(solver="newton-cholesky").fit(x[train], y[train])
    accuracy = (probe.predict(x[held_out]) == y[held_out]).mean()
    assert accuracy >= 0.75, accuracy


def test_predicate_is_linearly_predictable(pairs: dict[str, np.ndarray]) -> None:
    related, train = pairs["related"], pairs["train"]
    names, labels = np.unique(pairs["predicate"][related], return_inverse=True)
    assert 12 <= len(names) <= 30
    x = np.c_[pairs["x"][related], np.ones(related.sum())]
    fit, test = train[related], ~train[related]
    targets = np.eye(len(names))[labels[fit]]
    w = np.linalg.solve(x[fit].T @ x[fit] + 10.0 * np.eye(x.shape[1]), x[fit].T @ targets)
    accuracy = ((x[test] @ w).argmax(1) == labels[test]).mean()
    majority = (labels[test] == np.bincount(labels[fit]).argmax()).mean()
    assert accuracy > 2.5 * majority, (accuracy, majority)
