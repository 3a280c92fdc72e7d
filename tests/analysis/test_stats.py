import math

import numpy as np
import pytest
from scipy.stats import binomtest

from vlprobe.analysis.stats import mean_std_ci, wilson_interval


def test_ci_for_one_two_three():
    mean, std, half = mean_std_ci(np.array([1.0, 2.0, 3.0]))
    assert float(mean) == 2.0 and float(std) == 1.0
    # t(0.975, df=2) = 4.302653 -> 4.302653 / sqrt(3)
    assert float(half) == pytest.approx(4.302652729749462 / math.sqrt(3))
    assert float(half) == pytest.approx(2.4842, abs=1e-4)


def test_ci_over_seeds_per_layer_and_single_seed():
    values = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0]])  # 3 seeds x 2 layers
    mean, std, half = mean_std_ci(values, confidence=0.9)
    np.testing.assert_allclose(mean, [2.0, 10.0])
    np.testing.assert_allclose(std, [1.0, 0.0])
    np.testing.assert_allclose(half, [2.919986 / math.sqrt(3), 0.0], rtol=1e-6)
    mean, std, half = mean_std_ci(np.array([[0.5, 0.7]]))
    np.testing.assert_allclose(mean, [0.5, 0.7])
    assert np.isnan(std).all() and np.isnan(half).all()


def test_wilson_interval_matches_scipy_and_a_hand_value():
    for k, n in ((80, 100), (0, 50), (50, 50), (343, 500)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = wilson_interval(k / n, n)
        assert float(low) == pytest.approx(ci.low, abs=1e-12)
        assert float(high) == pytest.approx(ci.high, abs=1e-12)
    # by hand, 80 / 100: z = 1.959964, z^2 / n = 0.0384146, center = (0.8 + 0.0192073) /
    # 1.0384146 = 0.788902, half = 1.959964 / 1.0384146 * sqrt(0.0016 + 0.0000960) = 0.077732
    low, high = wilson_interval(0.8, 100)
    assert (float(low), float(high)) == pytest.approx((0.711170, 0.866634), abs=2e-6)


def test_wilson_interval_vectorised_and_nan():
    low, high = wilson_interval(np.array([0.5, np.nan, 0.5]), np.array([100, 100, 0]))
    assert low[0] < 0.5 < high[0]
    assert np.isnan(low[1:]).all() and np.isnan(high[1:]).all()
