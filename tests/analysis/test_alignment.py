import numpy as np
import pytest

from vlprobe.analysis.alignment import (
    alignment_accuracy,
    argmax_credit,
    cross_modal_share,
    top_heads,
)


def test_argmax_credit_shares_ties():
    scores = np.array([[0.2, 0.5, 0.3], [0.2, 0.5, 0.1], [0.1, 0.5, 0.3]])  # (R=3, heads=3)
    gold = np.array([True, False, False])
    # head 0: rows 0/1 tie, one gold -> 1/2; head 1: all tie -> 1/3; head 2: rows 0/2 tie -> 1/2
    np.testing.assert_allclose(argmax_credit(scores, gold), [0.5, 1 / 3, 0.5])
    assert argmax_credit(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    with pytest.raises(ValueError):
        argmax_credit(np.zeros((0, 2)), np.zeros(0, bool))


def test_float16_ties_are_not_given_to_the_first_candidate():
    """Two values 1e-4 apart round to one float16: the tie is shared, not won by row 0."""
    scores = np.array([[0.30001], [0.30009]], dtype=np.float32)
    gold = np.array([False, True])
    assert argmax_credit(scores, gold)[0] == 1.0
    assert argmax_credit(scores.astype(np.float16), gold)[0] == 0.5


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
    # phrase 1: head0 tie rows 3/4, one of them gold -> 1/2; head1 -> row 4 (ok)
    # phrase 2: head0 -> row 7 gold (ok); head1 -> row 6 (wrong)
    # phrase 3: no gold -> not scored
    # layer 1 ties everywhere -> #gold / #rows: phrase 0 1/3, phrase 1 1/2, phrase 2 2/3
    expected = np.array([[2.5 / 3, 1 / 3], [0.5, 0.5]])
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
