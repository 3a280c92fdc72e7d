"""Erasers with known answers: LEACE leaves a linear probe at the majority baseline."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from vlprobe.intervention.erasers import (
    Eraser,
    inlp,
    leace,
    leace_fitter,
    random_subspace,
)


def _planted(n: int = 600, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes whose means differ along dimensions 0 and 1 only."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, d))
    x[:, 0] += 3.0 * y
    x[:, 1] += 4.0 * (y == 1)
    return x, y


def _train_acc(x: np.ndarray, y: np.ndarray) -> float:
    return float(LogisticRegression(max_iter=2000).fit(x, y).score(x, y))


def test_leace_leaves_a_linear_probe_at_the_majority_baseline() -> None:
    x, y = _planted()
    majority = np.bincount(y).max() / y.size
    eraser = leace(leace_fitter([(x[:250], y[:250]), (x[250:], y[250:])], x.shape[1], 3))
    erased = eraser.apply(torch.tensor(x, dtype=torch.float32)).numpy()
    assert _train_acc(x, y) > 0.9
    assert _train_acc(erased, y) == majority  # not one training unit above the majority
    assert eraser.rank == 2  # k - 1 directions for k = 3 classes
    # the class means coincide after erasure (what LEACE guarantees), the rest is kept
    means = np.stack([erased[y == c].mean(0) for c in range(3)])
    assert np.abs(means - means.mean(0)).max() < 1e-4
    np.testing.assert_allclose(erased.mean(0), x.mean(0), atol=1e-4)


def test_leace_streamed_equals_leace_at_once() -> None:
    x, y = _planted()
    whole = leace(leace_fitter([(x, y)], x.shape[1], 3))
    parts = leace(
        leace_fitter([(x[i : i + 100], y[i : i + 100]) for i in range(0, 600, 100)], 8, 3)
    )
    probe = torch.tensor(x[:20], dtype=torch.float32)
    np.testing.assert_allclose(whole.apply(probe), parts.apply(probe), atol=1e-4)


def test_inlp_removes_the_linear_signal() -> None:
    x, y = _planted()
    eraser = inlp(x, y, iterations=4)
    erased = eraser.apply(torch.tensor(x, dtype=torch.float32)).numpy()
    assert _train_acc(erased, y) < 0.5  # from > 0.9; majority is ~0.34
    q = eraser.left
    np.testing.assert_allclose(q.T @ q, np.eye(eraser.rank), atol=1e-5)  # orthonormal


def test_random_subspace_is_an_orthogonal_projection_of_the_rank() -> None:
    eraser = random_subspace(16, 3, np.zeros(16), seed=1)
    x = torch.randn(50, 16)
    once = eraser.apply(x)
    torch.testing.assert_close(eraser.apply(once), once, atol=1e-5, rtol=0)  # idempotent
    assert torch.linalg.matrix_rank(x - once).item() == 3
    assert random_subspace(16, 3, np.zeros(16), seed=2).digest() != eraser.digest()
    assert random_subspace(16, 3, np.zeros(16), seed=1).digest() == eraser.digest()


def test_identity_changes_nothing_and_round_trips(tmp_path) -> None:
    x = torch.randn(5, 7)
    assert torch.equal(Eraser.identity(7).apply(x), x)
    eraser = random_subspace(7, 2, np.ones(7), seed=0)
    back = Eraser.load(eraser.save(tmp_path / "e.npz"))
    assert back.digest() == eraser.digest() and back.kind == "random"
