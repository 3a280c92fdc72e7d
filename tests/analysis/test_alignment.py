import numpy as np
import pytest

from vlprobe.analysis.alignment import alignment_accuracy, cross_modal_share, top_heads


def test_alignment_accuracy_by_hand():
    # rows of 4 phrases; layer 0 has two informative heads, layer 1 attends uniformly (ties)
    offset = np.array([0, 3, 5, 8, 10])
    gold = np.array([0, 1, 0, 0, 1, 1, 0, 1, 0, 0], dtype=bool)
    head0 = [0.1, 0.7, 0.2, 0.4, 0.4, 0.2, 0.1, 0.7, 0.9, 0.1]
    head1 = [0.5, 0.3, 0.2, 0.1, 0.9, 0.1, 0.8, 0.1, 0.1, 0.9]
    layer0 = np.stack([head0, head1], axis=-1)  # (K, H)
    layer1 = np.full_like(layer0, 0.5)
    attention = np.stack([layer0, layer1], axis=1)  # (K, A=2, H=2)
    # phrase 0: head0 -> row 1 gold (ok); head1 -> row 0 (wrong)
    # phrase 1: head0 tie rows 3/4 -> first, row 3, not gold (wrong); head1 -> row 4 (ok)
    # phrase 2: head0 -> row 7 gold (ok); head1 -> row 6 (wrong)
    # phrase 3: no gold -> not scored
    # layer 1 ties everywhere -> first row: phrase 0 wrong, 1 wrong, 2 (row 5) ok
    expected = np.array([[2 / 3, 1 / 3], [1 / 3, 1 / 3]])
    np.testing.assert_allclose(alignment_accuracy(offset, attention, gold), expected)
    # float16 (the cache dtype) gives the same answer
    acc16 = alignment_accuracy(offset, attention.astype(np.float16), gold)
    np.testing.assert_allclose(acc16, expected)


def test_alignment_accuracy_skips_empty_phrases_and_nan_when_nothing_scored():
    offset = np.array([0, 0, 2])  # phrase 0 has no candidates
    attention = np.array([[[0.2]], [[0.8]]])
    assert alignment_accuracy(offset, attention, np.array([False, True]))[0, 0] == 1.0
    assert np.isnan(alignment_accuracy(offset, attention, np.array([False, False]))[0, 0])


def test_cross_modal_share_by_hand():
    modality = np.array([0, 0, 1])  # two text tokens, one image token
    head0 = np.array(
        [
            [0.5, 0.3, 0.2],  # text row: 0.2 crosses
            [0.1, 0.1, 0.8],  # text row: 0.8 crosses
            [0.6, 0.0, 0.4],  # image row: 0.6 crosses
        ]
    )
    head1 = np.eye(3)  # attends to itself: nothing crosses
    ex0 = np.stack([head0, head1])[None]  # (A=1, H=2, 3, 3)
    ex1 = np.full((1, 2, 3, 3), 1 / 3)  # uniform: rows 0/1 cross 1/3, row 2 crosses 2/3
    text_only = np.full((1, 2, 2, 2), 0.5)
    out = cross_modal_share([ex0, ex1, text_only], [modality, modality, np.array([0, 0])])
    expected = np.array([[(1.6 / 3 + 4 / 9) / 2, (0.0 + 4 / 9) / 2]])
    np.testing.assert_allclose(out, expected)
    assert cross_modal_share([ex0], [modality])[0, 0] == pytest.approx(1.6 / 3)


def test_cross_modal_share_rejects_mismatch():
    with pytest.raises(ValueError):
        cross_modal_share([np.zeros((1, 1, 3, 3))], [np.array([0, 1])])


def test_top_heads_orders_and_ignores_nan():
    matrix = np.array([[0.1, 0.9, np.nan], [0.5, 0.9, 0.2]])
    assert top_heads(matrix, 3) == [(0, 1, 0.9), (1, 1, 0.9), (1, 0, 0.5)]
    assert len(top_heads(matrix, 10)) == 5
    assert top_heads(matrix, 0) == []
