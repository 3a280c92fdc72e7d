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
    special = np.array([[[0.4, 0.1]], [[0.25, 0.1]]])  # [CLS] + [SEP] part of the text mass
    out = modality_importance(cls_mass, n_text, n_image, special, np.array([2, 2]))
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
    # content tokens only: text mass minus the specials, over 1 and 3 content words
    np.testing.assert_allclose(out["content_text"], [[0.225, 0.15]])
    np.testing.assert_allclose(out["content_text_share"], [[0.225 / 0.675, 0.15 / 0.9]])
    cpt = [(0.2 / 1 + 0.25 / 3) / 2, (0.1 / 1 + 0.2 / 3) / 2]
    np.testing.assert_allclose(out["content_text_per_token"], [cpt])
    np.testing.assert_allclose(
        out["content_text_share_normalised"], [[c / (c + i) for c, i in zip(cpt, ipt, strict=True)]]
    )


def test_text_only_examples_do_not_enter_image_per_token():
    cls_mass = np.array([[[[1.0, 0.0]]], [[[0.6, 0.4]]]])  # (2, 1, 1, 2)
    special = np.zeros((2, 1, 1))
    out = modality_importance(cls_mass, np.array([4, 2]), np.array([0, 4]), special, np.zeros(2))
    assert out["image_per_token"][0, 0] == pytest.approx(0.1)  # 0.4 / 4, example 0 skipped
    assert out["text_per_token"][0, 0] == pytest.approx((0.25 + 0.3) / 2)


def test_modality_importance_rejects_bad_shapes():
    special, n_special = np.zeros((2, 1, 1)), np.ones(2)
    with pytest.raises(ValueError):
        modality_importance(np.zeros((2, 1, 1, 3)), np.ones(2), np.ones(2), special, n_special)
    with pytest.raises(ValueError):
        modality_importance(np.zeros((2, 1, 1, 2)), np.ones(3), np.ones(3), special, n_special)
    with pytest.raises(ValueError):
        modality_importance(np.zeros((2, 1, 1, 2)), np.ones(2), np.ones(2), special[:1], n_special)
