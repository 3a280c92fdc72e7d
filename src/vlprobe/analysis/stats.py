"""Uncertainty of a probe's accuracy: over seeds and over test examples.

Over seeds: mean, sample std and a Student-t confidence interval. With the handful of seeds a
probe gets (3-5), the normal approximation understates the interval; the t quantile with
``n - 1`` degrees of freedom does not. Over test examples: the Wilson score interval of an
accuracy measured on ``n`` examples (the test set is a sample too; seeds share it, so the seed
CI does not cover it).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

#: an interval over fewer seeds is flagged (rows ``few_seeds``, the console, the report): with
#: 2 seeds the t quantile is 12.7, the interval wide and its width itself a guess
MIN_SEEDS = 3


def mean_std_ci(
    values: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std (ddof = 1) and CI half-width over axis 0 (seeds) of ``values``.

    ``half_width = t_{(1 + confidence) / 2, n - 1} * std / sqrt(n)``; with one seed the std and
    half-width are NaN. Scalars come back as 0-d arrays (use ``float()``).
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie in (0, 1)")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError("values must have at least one seed along axis 0")
    n = x.shape[0]
    mean = x.mean(axis=0)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan.copy()
    std = x.std(axis=0, ddof=1)
    half = t_quantile(n, confidence) * std / np.sqrt(n)
    return mean, std, half


def t_quantile(n: int, confidence: float = 0.95) -> float:
    """Student t quantile of a two-sided ``confidence`` interval over ``n`` seeds (12.7 for 2)."""
    return float(stats.t.ppf((1 + confidence) / 2, n - 1))


def wilson_interval(
    accuracy: float | np.ndarray, n: int | np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval ``(low, high)`` of a proportion ``accuracy`` over ``n`` trials.

    ``center = (p + z^2 / 2n) / (1 + z^2 / n)``,
    ``half = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)``, ``z`` the normal quantile.
    Unlike the normal interval it stays inside [0, 1] and is not empty at 0 or 1. NaN where
    ``n < 1`` or the accuracy is missing (NaN).
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie in (0, 1)")
    p = np.asarray(accuracy, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    z = stats.norm.ppf((1 + confidence) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = 1 + z**2 / m
        center = (p + z**2 / (2 * m)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / m + z**2 / (4 * m**2))
    bad = (m < 1) | ~np.isfinite(p)
    return np.where(bad, np.nan, center - half), np.where(bad, np.nan, center + half)
