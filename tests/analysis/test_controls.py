import math

import numpy as np
import pytest

from vlprobe.analysis.controls import (
    control_labels,
    lookup_ceiling,
    selectivity,
    shuffled_labels,
)


def test_control_labels_are_fixed_per_type():
    types = ["dog", "cat", "dog", ("a", 1), "cat", ("a", 1), "dog"]
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    out = control_labels(types, labels, num_classes=3, seed=0)
    assert out.shape == (7,)
    for t in set(types):
        assert len({out[i] for i, u in enumerate(types) if u == t}) == 1
    np.testing.assert_array_equal(out, control_labels(types, labels, 3, seed=0))


def test_control_labels_follow_the_label_distribution():
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.3, 0.2, 0.0])  # class 3 never occurs, so never drawn
    n_types, reps = 4000, 3
    labels = rng.choice(4, size=n_types * reps, p=p)
    types = np.repeat(np.arange(n_types), reps)
    out = control_labels(types, labels, num_classes=4, seed=1)
    per_type = out[::reps]
    assert (per_type == out.reshape(n_types, reps).T).all()  # consistent per type
    assert not (per_type == 3).any()
    observed = np.bincount(per_type, minlength=4)[:3]
    expected = np.bincount(labels, minlength=4)[:3] / len(labels) * n_types
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 13.8  # 99.9% quantile of chi-square with 2 degrees of freedom
    # the control task differs from the real one and between seeds
    assert (out != labels).mean() > 0.3
    assert (control_labels(types, labels, 4, seed=2) != out).any()


def test_control_labels_validate_labels():
    with pytest.raises(ValueError):
        control_labels([1, 2], np.array([0, 3]), num_classes=3)
    with pytest.raises(ValueError):
        control_labels([1], np.array([0, 1]), num_classes=2)


def test_shuffled_labels_is_a_permutation():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    out = shuffled_labels(labels, seed=0)
    np.testing.assert_array_equal(np.sort(out), np.sort(labels))
    np.testing.assert_array_equal(out, shuffled_labels(labels, seed=0))
    assert not np.array_equal(out, labels)


def test_selectivity_is_the_difference():
    assert float(selectivity(0.9, 0.6)) == pytest.approx(0.3)
    np.testing.assert_allclose(selectivity([0.9, 0.8], np.array([0.5, 0.8])), [0.4, 0.0])


def test_lookup_ceiling_by_hand():
    # train: types a, a, b -> labels 1, 1, 0 (majority 1); test: a (seen, label 1),
    # b (seen, label 0), c (unseen: the lookup guesses 1, its label is 0), d (unseen, label 1)
    types = np.array(["a", "a", "b", "a", "b", "c", "d", "x"])
    control = np.array([1, 1, 0, 1, 0, 0, 1, -1])
    split = np.array([0, 0, 0, 2, 2, 2, 2, 2])
    out = lookup_ceiling(types, control, split)
    assert out["ceiling"] == pytest.approx(3 / 4)  # a, b right; c wrong; d right by majority
    assert out["recurrence"] == pytest.approx(2 / 4)
    assert math.isnan(lookup_ceiling(types, control, np.zeros(8, int))["ceiling"])
