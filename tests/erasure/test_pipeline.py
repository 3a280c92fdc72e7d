"""An intervention as an extraction setting: the cache it makes, its name and what it holds."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import open_dict
from sklearn.linear_model import LogisticRegression

from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import SPLIT_IDS, unit_path
from vlprobe.extraction.pipeline import build_model, ensure_cache, load_examples
from vlprobe.extraction.predict import extract
from vlprobe.intervention.concepts import Concept, concept
from vlprobe.intervention.erasers import Eraser
from vlprobe.intervention.hooks import erasing
from vlprobe.intervention.settings import cache_eraser, fitted, plain_config
from vlprobe.testing.models import tiny_config


def _cfg(
    compose_cfg,
    root: Path,
    feature_dim: int,
    extra: list[str],
    model: str = "visualbert",
    config: dict | None = None,
):
    """An extraction config of a tiny ``model`` (``config``: its architecture, default the
    tiny VisualBERT) on the demo data at ``root``, caches beside it."""
    cfg = compose_cfg(
        [
            f"model={model}",
            f"data.root={root}",
            "data.make_demo=false",
            f"data.feature_dim={feature_dim}",
            "extraction.progress=false",
            "extraction.batch_size=8",
            *extra,
        ],
        config_name="extract",
    )
    with open_dict(cfg):
        cfg.model.pretrained = None
        cfg.model.config = config or tiny_config("visualbert", feature_dim=feature_dim)
        cfg.paths.cache_dir = str(root.parent / f"cache-{model}-{root.name}")
    return cfg


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def keep(name: str, obj: object) -> None:  # returning a value would stop the visit
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(keep)
    return out


def _check_erased_at_layer_1(
    what: Concept, plain: CacheReader, emb_p: np.ndarray, emb_e: np.ndarray, margin: float
) -> None:
    """The plain layer 1 encodes the concept (a linear probe beats the majority by ``margin``
    on the train units); erased, it is at the majority baseline; layer 2 computed on it."""
    labels, _ = what.labels(plain, 4)
    train = (what.unit_split(plain) == SPLIT_IDS["train"]) & (labels >= 0)
    y = labels[train]
    assert y.size > 3 * emb_p.shape[-1]  # far more units than dimensions: not separable by luck
    majority = np.bincount(y).max() / y.size

    def train_acc(x: np.ndarray) -> float:
        return float(LogisticRegression(max_iter=5000).fit(x, y).score(x, y))

    assert train_acc(emb_p[1][train]) > majority + margin
    assert train_acc(emb_e[1][train]) <= majority + 0.02
    assert np.abs(emb_e[2] - emb_p[2]).max() > 1e-2


def test_identity_eraser_gives_the_plain_cache(
    compose_cfg, demo_root: Path, feature_dim: int, tmp_path: Path
) -> None:
    cfg = _cfg(compose_cfg, demo_root, feature_dim, [])
    examples, _ = load_examples(cfg, "flickr30k")
    adapter = build_model(cfg)
    common = {"batch_size": 8, "progress": False, "max_attention_maps": 2}
    plain = extract(examples, adapter, tmp_path / "plain.h5", {}, **common)
    with erasing(adapter.model, Eraser.identity(adapter.hidden_size), 1):
        same = extract(examples, adapter, tmp_path / "identity.h5", {}, **common)
    a, b = _datasets(plain), _datasets(same)
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_leace_cache_named_by_its_eraser_and_erased_at_its_layer(
    compose_cfg, demo_root: Path, feature_dim: int
) -> None:
    cfg = _cfg(
        compose_cfg,
        demo_root,
        feature_dim,
        ["intervention=leace", "intervention.layer=1", "intervention.top_k=4"],
    )
    what = concept("region_class")
    path = ensure_cache(cfg, "visual_genome", parts=("region",))
    plain = ensure_cache(plain_config(cfg), "visual_genome", parts=("region",))
    assert "__leace-region_class-L1__" in path.name and "leace" not in plain.name
    # the name and the fingerprint carry the eraser and the cache it was fitted on
    fingerprint = CacheReader(path).attr("input_fingerprint")
    node = fitted(cfg).intervention
    assert fingerprint["settings"]["intervention"]["eraser"] == node.eraser
    assert fingerprint["settings"]["intervention"]["fit_on"] == plain.name
    # the cache gives back the eraser it was made with (the objectives hook it again)
    held = cache_eraser(CacheReader(path))
    assert held is not None and held.digest() == node.eraser
    assert cache_eraser(CacheReader(plain)) is None
    # another eraser (a random draw) is another cache
    other = _cfg(
        compose_cfg,
        demo_root,
        feature_dim,
        ["intervention=random", "intervention.layer=1", "intervention.top_k=4"],
    )
    assert ensure_cache(other, "visual_genome", parts=("region",)).name != path.name

    erased, before = CacheReader(path), CacheReader(plain)
    emb_e, emb_p = (r.file[what.features][()].astype(np.float64) for r in (erased, before))
    np.testing.assert_array_equal(emb_e[0], emb_p[0])  # below the layer: untouched
    _check_erased_at_layer_1(what, before, emb_p, emb_e, margin=0.2)


@pytest.mark.parametrize("name", ["phrase_type", "senteval_label"])
def test_a_word_concept_is_erased_at_its_words_tokens(
    compose_cfg, demo_root: Path, senteval_root: Path, feature_dim: int, name: str
) -> None:
    """Planted by the demo generator: a phrase's entity type, a sentence's tense. LEACE at
    layer 1 takes them to the majority baseline on the train units; each unit's state there is
    exactly the erased mean of its tokens (the hook erased those tokens, all of them); the
    regions' states are untouched."""
    root = senteval_root if name == "senteval_label" else demo_root
    extra = ["intervention=leace", "intervention.layer=1", f"intervention.concept={name}"]
    cfg = _cfg(compose_cfg, root, feature_dim, [*extra, "intervention.top_k=4"])
    what = concept(name)
    parts = (*what.reads, "region") if name == "phrase_type" else what.reads
    path = ensure_cache(cfg, what.dataset, parts=parts)
    plain = ensure_cache(plain_config(cfg), what.dataset, parts=parts)
    assert f"__leace-{name}-L1__" in path.name
    erased, before = CacheReader(path), CacheReader(plain)
    emb_e, emb_p = (r.file[what.features][()].astype(np.float64) for r in (erased, before))
    np.testing.assert_array_equal(emb_e[0], emb_p[0])  # below the layer: untouched
    eraser = cache_eraser(erased)
    assert eraser is not None and eraser.rank >= 1
    expected = eraser.apply(torch.as_tensor(emb_p[1], dtype=torch.float32)).double().numpy()
    tolerance = 0.02 * np.abs(emb_p[1]).max()  # float16 states, averaged in float32
    np.testing.assert_allclose(emb_e[1], expected, atol=tolerance)
    assert np.abs(emb_p[1] - expected).max() > 5 * tolerance  # the erasure is not in the noise
    if name == "phrase_type":  # the regions of the same captions: not erased
        regions = unit_path("region", "embedding")
        np.testing.assert_array_equal(erased.file[regions][1], before.file[regions][1])
    _check_erased_at_layer_1(what, before, emb_p, emb_e, margin=0.1)


def test_a_model_without_region_layers_is_refused_before_any_extraction(
    compose_cfg, tmp_path: Path
) -> None:
    cfg = compose_cfg(["model=vilt_small", "intervention=leace"], config_name="extract")
    with pytest.raises(ValueError, match="patches") as err:
        fitted(cfg)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.rglob("*.h5"))  # not even the plain cache was built
