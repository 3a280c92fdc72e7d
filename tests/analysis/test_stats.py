import math

import numpy as np
import pytest

from vlprobe.analysis.stats import mean_std_ci


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
