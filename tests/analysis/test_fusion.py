import math

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from vlprobe.analysis.fusion import fusion_degree, modality_nmi, nmi_over_seeds


def test_separated_modalities_give_nmi_one():
    rng = np.random.default_rng(0)
    text = rng.normal(0.0, 0.1, size=(20, 4))
    image = rng.normal(50.0, 0.1, size=(30, 4))
    x = np.concatenate([text, image]).astype(np.float16)  # the cache dtype
    y = np.array([0] * 20 + [1] * 30)
    for method in ("arithmetic", "geometric"):
        assert modality_nmi(x, y, method) == pytest.approx(1.0)


def test_mixed_modalities_give_nmi_near_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 4))
    y = rng.integers(0, 2, size=1000)
    assert modality_nmi(x, y) < 0.1


def _h(*p: float) -> float:
    return -sum(q * math.log2(q) for q in p if q > 0)


def test_geometric_and_arithmetic_differ_when_entropies_differ():
    # clusters: 6 points at x=0 (4 text, 2 image) and 2 image points at x=100
    x = np.array([[0.0]] * 6 + [[100.0]] * 2)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    h_y = _h(0.5, 0.5)  # 1 bit
    h_c = _h(0.75, 0.25)  # 0.811 bits
    mi = h_c - 0.5 * _h(0.5, 0.5)  # H(C) - H(C|Y): Y=text is pure, Y=image is split 2/2
    arith = modality_nmi(x, y, "arithmetic")
    geo = modality_nmi(x, y, "geometric")
    assert arith == pytest.approx(mi / ((h_y + h_c) / 2))  # 0.3437
    assert geo == pytest.approx(mi / math.sqrt(h_y * h_c))  # 0.3456
    assert arith != pytest.approx(geo, abs=1e-3)
    clusters = (x[:, 0] > 50).astype(int)
    for method, value in (("arithmetic", arith), ("geometric", geo)):
        assert value == pytest.approx(
            normalized_mutual_info_score(y, clusters, average_method=method)
        )


def test_modality_nmi_rejects_unknown_method():
    with pytest.raises(ValueError):
        modality_nmi(np.zeros((4, 2)), np.array([0, 0, 1, 1]), "max")


def _two_layer_input():
    TXT, IMG = 0, 1
    # layer 0: every example separates its modalities along x, examples lie apart along y
    # layer 1: example 0 still separated, example 1 mixed (clusters along x hold one of each)
    layer0 = [(0, 0), (0, 1), (10, 0), (10, 1), (0, 100), (0, 101), (10, 100), (10, 101)]
    layer1 = [(0, 0), (0, 1), (10, 0), (10, 1), (0, 100), (10, 100), (0, 101), (10, 101)]
    modality = np.array([TXT, TXT, IMG, IMG, TXT, TXT, IMG, IMG])
    # example 2: 3 text tokens, 1 image token -> skipped per example, still pooled
    layer0 += [(0, 100), (0, 100), (0, 100), (10, 100)]
    layer1 += [(0, 1000), (0, 1000), (0, 1000), (0, 1000)]
    modality = np.concatenate([modality, [TXT, TXT, TXT, IMG]])
    hidden = np.array([layer0, layer1], dtype=np.float32)
    offset = np.array([0, 4, 8, 12])
    return hidden, modality, offset


def test_fusion_degree_per_example_vs_pooled():
    hidden, modality, offset = _two_layer_input()
    out = fusion_degree(hidden, modality, offset)
    assert out["n_examples"] == 2 and out["n_skipped"] == 1 and out["n_pooled_tokens"] == 12
    # per example: layer 0 both separated -> 1; layer 1 one separated, one mixed -> 0.5 +- 0.5
    np.testing.assert_allclose(out["per_example_mean"], [1.0, 0.5])
    np.testing.assert_allclose(out["per_example_std"], [0.0, 0.5])
    # pooled layer 0: k-means splits by y (example 0 vs examples 1+2), not by modality
    clusters0 = (hidden[0, :, 1] > 50).astype(int)
    # pooled layer 1: the 4 tokens of example 2, far away at y=1000, vs the rest
    clusters1 = (hidden[1, :, 1] > 500).astype(int)
    expected = [normalized_mutual_info_score(modality, c) for c in (clusters0, clusters1)]
    np.testing.assert_allclose(out["pooled"], expected)
    # hand check of layer 0: clusters {2T 2I} and {5T 3I} are nearly independent of modality
    assert out["pooled"][0] < 0.05 < out["per_example_mean"][0]


def test_fusion_degree_subsampling_is_deterministic():
    hidden, modality, offset = _two_layer_input()
    a = fusion_degree(hidden, modality, offset, max_pooled_tokens=6, max_examples=2, seed=3)
    b = fusion_degree(hidden, modality, offset, max_pooled_tokens=6, max_examples=2, seed=3)
    assert a["n_pooled_tokens"] == 6
    assert a["n_examples"] + a["n_skipped"] == 2
    for key in ("per_example_mean", "per_example_std", "pooled"):
        np.testing.assert_array_equal(a[key], b[key])


def test_fusion_degree_without_usable_examples_is_nan():
    hidden = np.zeros((1, 3, 2))
    out = fusion_degree(hidden, np.array([0, 0, 1]), np.array([0, 3]))
    assert out["n_examples"] == 0 and out["n_skipped"] == 1
    assert np.isnan(out["per_example_mean"][0])


def test_nmi_over_seeds_keeps_the_lowest_inertia_partition():
    # 1-d blobs: text at 0, image at 2, image at 10 (10 points each, small jitter). The 2-means
    # optimum by hand: {0, 2} vs {10} (inertia ~ 20 * 1^2 = 20) beats {0} vs {2, 10} (~ 320)
    rng = np.random.default_rng(0)
    x = np.concatenate([c + rng.normal(0, 0.01, 10) for c in (0.0, 2.0, 10.0)])[:, None]
    y = np.array([0] * 10 + [1] * 20)
    optimum = np.array([0] * 20 + [1] * 10)
    out = nmi_over_seeds(x, y, "arithmetic", seeds=[0, 1, 2])
    assert out["nmi"] == pytest.approx(normalized_mutual_info_score(y, optimum))
    assert out["seed_min"] <= out["nmi"] <= out["seed_max"]
    assert out["seed_std"] == pytest.approx(0.0)  # 10 restarts per seed find the optimum


def test_fewer_than_ten_restarts_refused():
    with pytest.raises(ValueError, match="n_init"):
        modality_nmi(np.zeros((4, 2)), np.array([0, 0, 1, 1]), n_init=1)


def test_pooled_spread_over_kmeans_seeds_in_the_result():
    hidden, modality, offset = _two_layer_input()
    out = fusion_degree(hidden, modality, offset, kmeans_seeds=3)
    for key in ("pooled_seed_std", "pooled_seed_min", "pooled_seed_max"):
        assert out[key].shape == (2,)
    assert np.all(out["pooled_seed_min"] <= out["pooled"] + 1e-12)
    assert np.all(out["pooled"] <= out["pooled_seed_max"] + 1e-12)


def test_per_example_spread_over_kmeans_seeds(monkeypatch: pytest.MonkeyPatch):
    import vlprobe.analysis.fusion as fusion

    hidden, modality, offset = _two_layer_input()
    # planted: a clustering whose NMI is the k-means seed / 10, so the per-seed means are known
    monkeypatch.setattr(fusion, "modality_nmi", lambda x, y, method, seed, n_init: seed / 10)
    out = fusion.fusion_degree(hidden, modality, offset, seed=4, kmeans_seeds=3)
    np.testing.assert_allclose(out["per_example_mean"], [0.4, 0.4])  # the mean at `seed`
    np.testing.assert_allclose(out["per_example_seed_min"], [0.4, 0.4])
    np.testing.assert_allclose(out["per_example_seed_max"], [0.6, 0.6])  # seeds 4, 5, 6
    np.testing.assert_allclose(out["per_example_seed_std"], np.std([0.4, 0.5, 0.6]))
    one = fusion.fusion_degree(hidden, modality, offset, seed=4, kmeans_seeds=1)
    np.testing.assert_allclose(one["per_example_seed_max"], one["per_example_seed_min"])
