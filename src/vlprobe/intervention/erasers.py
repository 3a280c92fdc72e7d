"""Linear erasers in one affine form: ``x -> x - (x - bias) @ right @ left.T``.

LEACE (Belrose et al. 2023, ``concept_erasure.LeaceFitter``) is an oblique projection of rank
k - 1 for k classes; INLP (Ravfogel et al. 2020) and the random control are orthogonal
projections (``left == right``, orthonormal columns). One form lets the hook, the hash and the
cache treat every eraser alike; ``rank == 0`` is the identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from concept_erasure import LeaceFitter

KINDS = ("leace", "inlp", "random")


@dataclass(frozen=True)
class Eraser:
    """``left``, ``right``: ``(d, r)``; ``bias``: ``(d,)`` (the mean the projection keeps)."""

    kind: str
    left: np.ndarray
    right: np.ndarray
    bias: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.bias.shape[0])

    @property
    def rank(self) -> int:
        return int(self.left.shape[1])

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Erase rows of ``x`` (``(..., d)``), computed in float32, returned in ``x``'s dtype."""
        left, right, bias = (
            torch.as_tensor(a, device=x.device) for a in (self.left, self.right, self.bias)
        )
        flat = x.float()
        return (flat - ((flat - bias) @ right) @ left.T).to(x.dtype)

    def digest(self) -> str:
        """sha256 of the kind and the float32 parameters: names the cache it makes."""
        h = hashlib.sha256(self.kind.encode())
        for array in (self.left, self.right, self.bias):
            a = np.ascontiguousarray(array, dtype=np.float32)
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial.npz")
        np.savez(tmp, kind=self.kind, left=self.left, right=self.right, bias=self.bias)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Eraser:
        with np.load(path) as f:
            return cls(str(f["kind"]), f["left"], f["right"], f["bias"])

    @classmethod
    def identity(cls, dim: int) -> Eraser:
        empty = np.zeros((dim, 0), np.float32)
        return cls("identity", empty, empty, np.zeros(dim, np.float32))


def _float32(kind: str, left: np.ndarray, right: np.ndarray, bias: np.ndarray) -> Eraser:
    return Eraser(kind, *(np.ascontiguousarray(a, dtype=np.float32) for a in (left, right, bias)))


def leace_fitter(batches: Iterable[tuple[np.ndarray, np.ndarray]], dim: int, classes: int):
    """A ``LeaceFitter`` updated with every ``(x (n, d), y (n,) class ids)`` batch (float64).

    No covariance shrinkage and a tiny SVD tolerance: with a few thousand units the plain
    estimate is what the guarantee (no linear probe beats the majority class on the fitted
    data) is stated for.
    """
    fitter = LeaceFitter(dim, classes, dtype=torch.float64, shrinkage=False, svd_tol=1e-6)
    for x, y in batches:
        z = torch.nn.functional.one_hot(torch.as_tensor(y, dtype=torch.long), classes)
        fitter.update(torch.as_tensor(x, dtype=torch.float64), z)
    return fitter


def leace(fitter: LeaceFitter) -> Eraser:
    eraser = fitter.eraser
    bias = eraser.bias if eraser.bias is not None else torch.zeros(fitter.x_dim)
    # LeaceEraser: x - ((x - bias) @ proj_right.mH) @ proj_left.mH, proj_*: (k, d) / (d, k)
    left = eraser.proj_left.numpy()
    right = eraser.proj_right.mH.numpy()
    keep = np.linalg.norm(left, axis=0) * np.linalg.norm(right, axis=0) > 1e-12
    return _float32("leace", left[:, keep], right[:, keep], bias.numpy())


def random_subspace(dim: int, rank: int, mean: np.ndarray, seed: int) -> Eraser:
    """The control: orthogonal projection out of a uniformly random ``rank``-dim subspace."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    return _float32("random", basis, basis, mean)


def inlp(
    x: np.ndarray, y: np.ndarray, iterations: int, seed: int = 0, max_iter: int = 500
) -> Eraser:
    """INLP: fit a linear classifier, project out its weights' row space, repeat.

    Each round's multinomial logistic regression (scikit-learn) is fitted on the features
    projected so far; the union of the removed directions is kept orthonormal.
    """
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(0)
    centred = (x - mean).astype(np.float64)
    scale = centred.std(0) + 1e-8
    basis = np.zeros((x.shape[1], 0))
    for _ in range(iterations):
        projected = centred - centred @ basis @ basis.T
        clf = LogisticRegression(max_iter=max_iter, random_state=seed)
        clf.fit(projected / scale, y)
        weights = (clf.coef_ / scale).T  # directions in the raw feature space, (d, C)
        weights = weights - basis @ (basis.T @ weights)
        u, s, _ = np.linalg.svd(weights, full_matrices=False)
        new = u[:, s > 1e-8 * max(s.max(), 1e-30)]
        if new.shape[1] == 0:
            break
        basis, _ = np.linalg.qr(np.concatenate([basis, new], axis=1))
    return _float32("inlp", basis, basis, mean)
