import math

import numpy as np
import pytest
import torch

from probes.mdl import code_bits, pick
from vlprobe.analysis.mdl import (
    PRIOR_C,
    SMOOTHING,
    block_edges,
    code_probabilities,
    l2_strength,
    online_blocks,
    online_codelength,
    prior_codelength,
    prior_probabilities,
)


def test_block_edges():
    assert block_edges(1000) == [1, 2, 4, 8, 16, 32, 62, 125, 250, 500, 1000]
    assert block_edges(10) == [1, 2, 5, 10]  # 0.1% ... 12.5% of 10 all round up to 1
    assert block_edges(1) == [1]
    with pytest.raises(ValueError):
        block_edges(10, fractions=(0.5, 1.5))


def test_online_codelength_by_hand():
    # 8 examples, 4 classes (2 bits each); blocks [0,2) uniform, [2,4) 3 bits, [4,8) 5 bits
    out = online_codelength([2, 4, 8], [3.0, 5.0], first_block_size=2, num_classes=4)
    assert out["first_block_bits"] == 4.0
    assert out["online_codelength"] == 12.0
    assert out["uniform_codelength"] == 16.0
    assert out["compression"] == pytest.approx(16 / 12)
    assert out["num_examples"] == 8


def test_online_codelength_three_classes():
    out = online_codelength([1, 3], [1.5], first_block_size=1, num_classes=3)
    assert out["online_codelength"] == pytest.approx(math.log2(3) + 1.5)
    assert out["uniform_codelength"] == pytest.approx(3 * math.log2(3))


def test_online_codelength_validates():
    with pytest.raises(ValueError):
        online_codelength([2, 4], [1.0, 2.0], 2, 2)  # one loss too many
    with pytest.raises(ValueError):
        online_codelength([2, 4], [1.0], 1, 2)  # first block disagrees with the edges
    with pytest.raises(ValueError):
        online_codelength([4, 2], [1.0], 4, 2)  # not increasing


def test_online_blocks_are_a_seeded_permutation_with_block_ends():
    order, edges = online_blocks(np.arange(10, 30), seed=3, fractions=[0.1, 0.5, 1.0])
    assert sorted(order.tolist()) == list(range(10, 30)) and edges == [2, 10, 20]
    again, _ = online_blocks(np.arange(10, 30), seed=3, fractions=[0.1, 0.5, 1.0])
    np.testing.assert_array_equal(order, again)


def test_l2_strength_matches_sklearn_objective():
    # sklearn: C * sum CE + 1/2 ||w||^2 ; per example (divide by C n): mean CE + ||w||^2 / (2 C n)
    assert l2_strength(0.1, 50) == pytest.approx(1 / 5)
    with pytest.raises(ValueError):
        l2_strength(0.0, 5)


def test_prior_probabilities_are_add_one_frequencies():
    # 3 classes, seen labels 0, 0, 2: counts (2, 0, 1) + 1 over 3 + 3
    np.testing.assert_allclose(prior_probabilities(np.array([0, 0, 2]), 3), [3 / 6, 1 / 6, 2 / 6])
    np.testing.assert_allclose(prior_probabilities(np.array([1]), 2), [1 / 3, 2 / 3])


def test_code_probabilities_bound_the_cost_of_an_unseen_label():
    p = code_probabilities(np.array([1.0, 0.0]), 2)
    np.testing.assert_allclose(p, [1 - SMOOTHING / 2, SMOOTHING / 2])
    assert -math.log2(p[1]) == pytest.approx(math.log2(2 / SMOOTHING))  # ~11 bits, not inf
    tensor = code_probabilities(torch.tensor([0.25, 0.75]), 2)  # tensors too (the probes')
    assert tensor.sum().item() == pytest.approx(1.0)


def test_pick_takes_the_lowest_validation_bits_ties_to_the_strongest_penalty():
    val = np.array([[5.0, 4.0, 4.0], [3.0, 3.0, 9.0]])  # probes x candidates (prior, C1, C2)
    block = np.array([[50.0, 40.0, 41.0], [30.0, 31.0, 90.0]])
    bits, chosen = pick(val, block, [PRIOR_C, 0.1, 1.0])
    np.testing.assert_array_equal(bits, [40.0, 30.0])
    np.testing.assert_array_equal(chosen, [0.1, PRIOR_C])


def test_prior_codelength_by_hand():
    # labels in coding order, blocks [0, 2), [2, 4), [4, 6), 3 classes
    labels = np.array([0, 1, 1, 0, 2, 1])
    # first block uniform; then add-one frequencies of (0, 1): (2, 2, 1) / 5 code labels 1, 0;
    # those of (0, 1, 1, 0): (3, 3, 1) / 7 code labels 2, 1
    plain = 2 * math.log2(3) + 2 * math.log2(5 / 2) + math.log2(7) + math.log2(7 / 3)
    assert prior_codelength(labels, [2, 4, 6], 3, smoothing=0.0) == pytest.approx(plain)

    def smoothed(p: float) -> float:
        return -math.log2((1 - SMOOTHING) * p + SMOOTHING / 3)

    by_hand = 2 * math.log2(3) + 2 * smoothed(2 / 5) + smoothed(1 / 7) + smoothed(3 / 7)
    assert prior_codelength(labels, [2, 4, 6], 3) == pytest.approx(by_hand)
    # the prior sends these skewed labels cheaper than the uniform code's 6 log2(3) = 9.51 bits
    unbalanced = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    assert prior_codelength(unbalanced, [2, 4, 8], 3, 0.0) < 8 * math.log2(3)


def test_code_bits_smooth_in_log_space():
    z = torch.tensor([[0.0, math.log(3.0)], [0.0, -2000.0]])  # p(1) = 3/4; p(1) underflows
    y = torch.tensor([1, 1])
    plain = code_bits(z, y, 0.0)
    assert plain[0].item() == pytest.approx(math.log2(4 / 3))
    assert plain[1].item() == pytest.approx(2000 / math.log(2))  # finite, not inf
    smoothed = code_bits(z, y, SMOOTHING)
    assert smoothed[0].item() == pytest.approx(-math.log2((1 - SMOOTHING) * 0.75 + SMOOTHING / 2))
    assert smoothed[1].item() == pytest.approx(math.log2(2 / SMOOTHING))
