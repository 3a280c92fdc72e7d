"""LXMERT: erasure in its single-stream encoders (vision for regions, language for words), the
cross-modality layers refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from test_hooks import _batch as regions_batch
from test_hooks import erase_words
from test_pipeline import _cfg as extraction_cfg
from test_pipeline import _check_erased_at_layer_1, _datasets
from test_task import _cfg as study_cfg

from probes.run import run
from vlprobe.cache.reader import CacheReader
from vlprobe.extraction.pipeline import build_model, ensure_cache, load_examples
from vlprobe.extraction.predict import extract
from vlprobe.intervention import hooks
from vlprobe.intervention.concepts import concept
from vlprobe.intervention.erasers import Eraser, random_subspace
from vlprobe.intervention.hooks import erasing, site_for
from vlprobe.intervention.settings import cache_eraser, fitted, plain_config
from vlprobe.models.base import ModelInput
from vlprobe.reporting.run_results import read_run_results
from vlprobe.testing.models import build_adapter, tiny_config

#: two layers in each single-stream encoder, so that one lies above the erased layer 1
LAYERS = {"l_layers": 2, "r_layers": 2, "x_layers": 2}


def _adapter():
    return build_adapter("lxmert", config={**tiny_config("lxmert", 16), **LAYERS}, seed=0)


def _batch() -> list[ModelInput]:
    """Two inputs with regions and one text-only (LXMERT feeds it one dummy region)."""
    first, _, third = regions_batch()
    return [first, ModelInput(["she", "ran"]), third]


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_region_erasure_is_in_the_vision_encoder_at_its_layer(layer: int) -> None:
    adapter, batch = _adapter(), _batch()
    plain = adapter.encode_streams(batch)
    eraser = random_subspace(32, 3, np.full(32, 0.1), seed=1)
    with erasing(adapter.model, eraser, layer, "regions"):
        erased = adapter.encode_streams(batch)
    for p, e in zip(plain, erased, strict=True):
        _same(e["language"].hidden, p["language"].hidden)  # the language encoder never sees them
        if "vision" not in p:  # text-only: its dummy region is not a region, nothing changes
            _same(e["cross"].hidden, p["cross"].hidden)
            continue
        pv, ev = p["vision"].hidden, e["vision"].hidden
        _same(ev[:layer], pv[:layer])
        torch.testing.assert_close(ev[layer], eraser.apply(pv[layer]), rtol=0, atol=1e-5)
        if layer < 2:  # the vision layers above compute on the erased states
            assert (ev[layer + 1 :] - pv[layer + 1 :]).abs().max() > 1e-3
        text = p["cross"].modality == 0  # the cross encoder reads them: its image tokens change
        _same(e["cross"].hidden[0, text], p["cross"].hidden[0, text])
        assert (e["cross"].hidden[0, ~text] - p["cross"].hidden[0, ~text]).abs().max() > 1e-3
    assert torch.equal(adapter.encode_streams(batch)[0]["vision"].hidden, plain[0]["vision"].hidden)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_word_erasure_is_in_the_language_encoder_at_its_layer(layer: int) -> None:
    adapter, batch = _adapter(), _batch()
    chosen = {0: [1, 4], 1: [0], 2: []}
    plain, erased, eraser = erase_words(adapter, batch, chosen, layer, adapter.encode_streams)
    for b, (p, e) in enumerate(zip(plain, erased, strict=True)):
        if "vision" in p:  # the vision encoder never sees the words
            _same(e["vision"].hidden, p["vision"].hidden)
        pl, el = p["language"].hidden, e["language"].hidden
        picked = torch.isin(p["language"].word_index, torch.tensor(chosen[b], dtype=torch.long))
        _same(el[:layer], pl[:layer])
        _same(el[layer, ~picked], pl[layer, ~picked])  # specials, other words
        torch.testing.assert_close(
            el[layer, picked], eraser.apply(pl[layer, picked]), atol=1e-5, rtol=0
        )
        changed = (e["cross"].hidden - p["cross"].hidden).abs().max()
        assert (changed > 1e-3) == bool(chosen[b])  # the cross encoder reads the erased words


def test_a_layer_outside_an_lxmert_encoder_is_refused() -> None:
    model = _adapter().model
    with pytest.raises(ValueError, match="intervention.layer=3: the model has hidden layers 0-2"):
        site_for(model, 3, "regions")
    assert site_for(model, 2, "regions")[0] is model.encoder.r_layers[1]
    assert site_for(model, 0, "words")[0] is model.embeddings


# --- the intervention as an extraction setting, on a tiny LXMERT ---------------------------


def _cfg(compose_cfg, root: Path, feature_dim: int, extra: list[str]):
    lxmert = {**tiny_config("lxmert", feature_dim=feature_dim), **LAYERS}
    return extraction_cfg(compose_cfg, root, feature_dim, extra, "lxmert_small", lxmert)


@pytest.mark.parametrize("dataset", ["visual_genome", "flickr30k"])
def test_identity_erasers_give_the_plain_cache(
    compose_cfg, demo_root: Path, feature_dim: int, tmp_path: Path, dataset: str
) -> None:
    cfg = _cfg(compose_cfg, demo_root, feature_dim, [])
    examples, _ = load_examples(cfg, dataset)
    adapter = build_model(cfg)
    common = {"batch_size": 8, "progress": False, "max_attention_maps": 2}
    plain = extract(examples, adapter, tmp_path / "plain.h5", {}, **common)
    identity = Eraser.identity(adapter.hidden_size)
    everything = hooks.selecting_words(adapter, lambda inp: range(len(inp.words)))
    regions = erasing(adapter.model, identity, 1, "regions")
    with regions, everything, erasing(adapter.model, identity, 2, "words"):
        same = extract(examples, adapter, tmp_path / "identity.h5", {}, **common)
    a, b = _datasets(plain), _datasets(same)
    assert a.keys() == b.keys() and any(k.startswith("streams/vision/") for k in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_region_class_is_erased_in_the_vision_stream(
    compose_cfg, demo_root: Path, feature_dim: int
) -> None:
    extra = ["intervention=leace", "intervention.layer=1", "intervention.top_k=4"]
    cfg = _cfg(compose_cfg, demo_root, feature_dim, extra)
    what = concept("region_class")
    path = ensure_cache(cfg, "visual_genome", parts=("region",))
    plain = ensure_cache(plain_config(cfg), "visual_genome", parts=("region",))
    assert "__leace-region_class-L1__" in path.name
    assert fitted(cfg).intervention.stream == "vision"
    held = cache_eraser(CacheReader(path))
    assert held is not None and held.digest() == fitted(cfg).intervention.eraser
    erased = CacheReader(path).stream_reader("vision")
    before = CacheReader(plain).stream_reader("vision")
    emb_e, emb_p = (r.file[what.features][()].astype(np.float64) for r in (erased, before))
    np.testing.assert_array_equal(emb_e[0], emb_p[0])  # below the layer: untouched
    _check_erased_at_layer_1(what, before, emb_p, emb_e, margin=0.2)
    # the language encoder never sees the regions: its stream is the plain one, dataset by dataset
    lang_e, lang_p = (
        {k: v for k, v in _datasets(p).items() if k.startswith("streams/language/")}
        for p in (path, plain)
    )
    assert lang_e.keys() == lang_p.keys() and any("/units/" in k for k in lang_e)
    for name in lang_p:
        np.testing.assert_array_equal(lang_e[name], lang_p[name], err_msg=name)
    # the cross encoder's image tokens computed on the erased regions
    cross_e, cross_p = (CacheReader(p).stream_reader("cross") for p in (path, plain))
    region = what.features
    assert np.abs(cross_e.file[region][0] - cross_p.file[region][0]).max() > 1e-2


def test_phrase_type_is_erased_in_the_language_stream(
    compose_cfg, demo_root: Path, feature_dim: int
) -> None:
    extra = ["intervention=leace", "intervention.layer=1", "intervention.concept=phrase_type"]
    cfg = _cfg(compose_cfg, demo_root, feature_dim, [*extra, "intervention.top_k=4"])
    what = concept("phrase_type")
    parts = (*what.reads, "region")
    path = ensure_cache(cfg, what.dataset, parts=parts)
    plain = ensure_cache(plain_config(cfg), what.dataset, parts=parts)
    erased = CacheReader(path).stream_reader("language")
    before = CacheReader(plain).stream_reader("language")
    emb_e, emb_p = (r.file[what.features][()].astype(np.float64) for r in (erased, before))
    np.testing.assert_array_equal(emb_e[0], emb_p[0])
    _check_erased_at_layer_1(what, before, emb_p, emb_e, margin=0.1)
    vis_e, vis_p = (CacheReader(p).stream_reader("vision") for p in (path, plain))
    regions = "units/region/embedding"
    np.testing.assert_array_equal(vis_e.file[regions][()], vis_p.file[regions][()])


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["intervention.stream=cross"], "intervention.stream=cross: .*two streams.*vis00..vis01"),
        (["intervention.layer=2"], r"intervention.layer=2 is outside LXMERT's vision encoder"),
        (["intervention.concept=phrase_type", "intervention.stream=vision"], "language stream"),
        (["model.stream=cross"], "model.stream=cross: .* vision stream"),
    ],
)
def test_cross_layers_and_others_are_refused_in_one_line_before_extraction(
    compose_cfg, tmp_path: Path, extra: list[str], match: str
) -> None:
    cfg = compose_cfg(
        ["model=lxmert_small", "intervention=leace", "intervention.layer=1", *extra],
        config_name="extract",
    )
    with open_dict(cfg):
        cfg.paths.cache_dir = str(tmp_path / "cache")
    with pytest.raises(ValueError, match=match) as err:
        fitted(cfg)
    assert "\n" not in str(err.value)
    if not extra[0].startswith("model."):  # the layers that can be used are named
        assert "vis00..vis01" in str(err.value) and "lang00..lang02" in str(err.value)
    assert not list(tmp_path.rglob("*.h5"))  # not even the plain cache was built


def test_the_study_probes_the_concept_in_its_stream_and_measures_cross(
    compose_cfg, demo_root: Path, feature_dim: int
) -> None:
    """``task=concept_erasure`` on LXMERT: the concept's probe reads the vision stream (erased
    at vis01), the relation probes the cross-modality layers, which compute on the erased states
    (none of them is marked as the erased layer)."""
    lxmert = {**tiny_config("lxmert", feature_dim=feature_dim), **LAYERS}
    extra = ["task.measure=[visual_relation]"]
    cfg = study_cfg(compose_cfg, demo_root, feature_dim, extra, "lxmert_small", lxmert)
    run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = read_run_results(out / "results.json").rows
    compared = {(r["measure"], r["layer"]): r for r in rows if "leace_minus_random" in r}
    concept_rows = [r for (m, _), r in compared.items() if m == "region_class"]
    assert {r["stream"] for r in concept_rows} == {"vision"} and len(concept_rows) == 3
    at = compared[("region_class", 1)]
    assert at["name"].endswith("(on erased layer)")
    assert at["plain"] > at["chance"] + 0.3
    assert at["leace"] < at["plain"] - 0.3 and at["leace"] < min(at["random_per_draw"]) - 0.3
    below = compared[("region_class", 0)]
    assert below["leace"] == below["plain"] == below["random"]
    relations = [r for (m, _), r in compared.items() if m.startswith("relation_")]
    assert {r["layer"] for r in relations} == set(range(3))  # X00..X02 of the cross stream
    assert {r["stream"] for r in relations} == {"cross"}
    assert not any("erased" in r["name"] for r in relations)
    assert (out / "cross" / "erasure_region_class.png").exists()
