"""Spread over seeds: mean, sample std and a Student-t confidence interval.

With the handful of seeds a probe gets (3-5), the normal approximation understates the
interval; the t quantile with ``n - 1`` degrees of freedom does not.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


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
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / np.sqrt(n)
    return mean, std, half
