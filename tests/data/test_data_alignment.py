import numpy as np
import pytest

from vlprobe.data.alignment import iou_matrix, tie_gold_boxes
from vlprobe.data.types import Box, RegionFeatures


def test_iou_by_hand() -> None:
    a = np.array([[0, 0, 2, 2]], np.float32)
    b = np.array([[1, 0, 3, 2], [0, 0, 2, 2], [5, 5, 6, 6], [2, 0, 4, 2]], np.float32)
    # overlap by one column: intersection 2, union 4 + 4 - 2 = 6
    np.testing.assert_allclose(iou_matrix(a, b), [[2 / 6, 1.0, 0.0, 0.0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)
    assert iou_matrix(a, np.zeros((0, 4))).shape == (1, 0)
    np.testing.assert_allclose(iou_matrix(b, a), iou_matrix(a, b).T)


def _regions() -> RegionFeatures:
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [10, 10, 20, 20]], np.float32)
    feats = np.array([[1, 0], [0, 1], [9, 9]], np.float32)
    return RegionFeatures("i", 30, 30, boxes, feats)


def test_tie_iou_mode() -> None:
    gold = [Box(0, 0, 2, 2), Box(1.5, 0, 3, 2), Box(10, 10, 13, 13), Box(25, 25, 26, 26)]
    regions, ties = tie_gold_boxes(gold, _regions(), "iou", 0.5)
    assert regions is not None and len(regions.boxes) == 3  # unchanged
    # box 2: IoU with region 1 = 3/4; box 3: IoU 9/100 < 0.5; box 4: no overlap
    assert ties == [0, 1, None, None]
    assert tie_gold_boxes(gold, _regions(), "iou", 0.05)[1] == [0, 1, 2, None]
    assert (
        tie_gold_boxes(gold, RegionFeatures("e", 1, 1, np.zeros((0, 4)), np.zeros((0, 2))))[1]
        == [None] * 4
    )


def test_tie_add_mode_appends_rows() -> None:
    gold = [Box(0, 0, 2, 2), Box(25, 25, 26, 26), Box(0, 0, 2, 2)]
    out, ties = tie_gold_boxes(gold, _regions(), "add")
    assert ties == [3, 4, 3]  # identical gold boxes share one appended row
    np.testing.assert_array_equal(out.boxes[3:], [[0, 0, 2, 2], [25, 25, 26, 26]])
    # IoU 1 with region 0 and 2/6 with region 1 -> weighted mean
    np.testing.assert_allclose(
        out.features[3], (1 * np.array([1, 0]) + (1 / 3) * np.array([0, 1])) / (4 / 3)
    )
    np.testing.assert_allclose(out.features[4], [10 / 3, 10 / 3])  # no overlap: mean of all
    np.testing.assert_array_equal(out.features[:3], _regions().features)
    assert out.features.dtype == np.float32 and (out.width, out.height) == (30, 30)


def test_bad_mode_and_threshold() -> None:
    with pytest.raises(ValueError, match="tie mode"):
        tie_gold_boxes([Box(0, 0, 1, 1)], _regions(), "nearest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        tie_gold_boxes([Box(0, 0, 1, 1)], _regions(), "iou", 0.0)
