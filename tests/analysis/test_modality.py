import numpy as np
import pytest

from vlprobe.analysis.modality import modality_importance


def test_modality_importance_by_hand():
    # 2 examples, 1 layer, 2 heads; [..., 0] text mass, [..., 1] image mass
    cls_mass = np.array(
        [
            [[[0.6, 0.4], [0.2, 0.8]]],
            [[[0.5, 0.5], [0.3, 0.7]]],
        ]
    )
    n_text = np.array([3, 5])
    n_image = np.array([2, 10])
    out = modality_importance(cls_mass, n_text, n_image)
    assert all(v.shape == (1, 2) for v in out.values())
    np.testing.assert_allclose(out["text"], [[0.55, 0.25]])
    np.testing.assert_allclose(out["image"], [[0.45, 0.75]])
    np.testing.assert_allclose(out["text_share"], [[0.55, 0.25]])
    tpt = [(0.6 / 3 + 0.5 / 5) / 2, (0.2 / 3 + 0.3 / 5) / 2]  # 0.15, 0.0633
    ipt = [(0.4 / 2 + 0.5 / 10) / 2, (0.8 / 2 + 0.7 / 10) / 2]  # 0.125, 0.235
    np.testing.assert_allclose(out["text_per_token"], [tpt])
    np.testing.assert_allclose(out["image_per_token"], [ipt])
    np.testing.assert_allclose(
        out["text_share_normalised"], [[0.15 / 0.275, tpt[1] / (tpt[1] + ipt[1])]]
    )
    assert out["text_share_normalised"][0, 0] == pytest.approx(0.5454545)


def test_text_only_examples_do_not_enter_image_per_token():
    cls_mass = np.array([[[[1.0, 0.0]]], [[[0.6, 0.4]]]])  # (2, 1, 1, 2)
    out = modality_importance(cls_mass, np.array([4, 2]), np.array([0, 4]))
    assert out["image_per_token"][0, 0] == pytest.approx(0.1)  # 0.4 / 4, example 0 skipped
    assert out["text_per_token"][0, 0] == pytest.approx((0.25 + 0.3) / 2)


def test_modality_importance_rejects_bad_shapes():
    with pytest.raises(ValueError):
        modality_importance(np.zeros((2, 1, 1, 3)), np.ones(2), np.ones(2))
    with pytest.raises(ValueError):
        modality_importance(np.zeros((2, 1, 1, 2)), np.ones(3), np.ones(3))
