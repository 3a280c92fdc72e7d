import math

import pytest

from vlprobe.analysis.mdl import block_edges, online_codelength


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
