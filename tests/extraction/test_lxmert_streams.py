"""LXMERT's three streams in one cache: every layer and head of each, equal to transformers."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import open_dict

from vlprobe.cache.inspect import describe
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.verify import verify_cache
from vlprobe.extraction.pipeline import build_model, load_examples, run_extraction
from vlprobe.models.regions import normalised_boxes
from vlprobe.reporting.run_results import read_run_results
from vlprobe.synthetic import make_demo_data
from vlprobe.testing.models import tiny_config

DIM = 32
LAYERS = {"l_layers": 2, "r_layers": 1, "x_layers": 3}  # each stream its own depth


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lxmert-streams")
    make_demo_data(root, scenes=16, seed=1, feature_dim=DIM, senteval_per_task=60)
    return root


def lxmert_cfg(compose_cfg, root: Path, extra: list[str], config_name: str = "extract"):
    """``model=lxmert_small`` at a tiny size on the demo data at ``root``."""
    cfg = compose_cfg(
        [
            "model=lxmert_small",
            f"data.root={root}",
            "data.make_demo=false",
            f"data.feature_dim={DIM}",
            "data.vg_split=[0.5,0.25,0.25]",  # 16 scenes: every split gets images
            "extraction.progress=false",
            *extra,
        ],
        config_name=config_name,
    )
    with open_dict(cfg):
        cfg.model.config = {**tiny_config("lxmert", feature_dim=DIM), **LAYERS}
    return cfg


def test_one_cache_holds_every_stream_equal_to_transformers(compose_cfg, demo_root: Path):
    cfg = lxmert_cfg(
        compose_cfg,
        demo_root,
        ["dataset=flickr30k", "extraction.parts=all", "extraction.dtype=float32"],
    )
    path = run_extraction(cfg, "flickr30k")
    assert verify_cache(path) == []
    summary = describe(path)
    assert "stream vision (image tokens): 2 hidden layers vis00..vis01, 4 heads" in summary
    assert "stream language (text tokens): 3 hidden layers lang00..lang02, 4 heads" in summary
    root = CacheReader(path)
    assert root.streams == ["cross", "language", "vision"]
    readers = {s: root.stream_reader(s) for s in root.streams}
    assert readers["cross"].layer_names == ["X00", "X01", "X02", "X03"]
    assert readers["language"].layer_names == ["lang00", "lang01", "lang02"]
    assert readers["vision"].layer_names == ["vis00", "vis01"]
    for stream, reader in readers.items():
        assert reader.attr("stream") == stream
        assert reader.num_heads == 4
        assert len(reader.layer_names) == reader.num_layers + 1
    # the same examples, in the same order, in every stream
    ids = [list(r.example("id")) for r in readers.values()]
    assert ids[0] == ids[1] == ids[2]
    n_text = readers["cross"].example("n_text")
    n_image = readers["cross"].example("n_image")
    assert (readers["language"].example("n_text") == n_text).all()
    assert (readers["language"].example("n_image") == 0).all()
    assert (readers["vision"].example("n_text") == 0).all()
    assert (readers["vision"].example("n_image") == n_image).all()
    # units: phrases in the text streams, regions in the image streams; coreference pairs
    # (phrase x region) only where both are
    assert readers["language"].unit("region", "example").size == 0
    assert readers["vision"].unit("phrase", "example").size == 0
    assert readers["cross"].pair("coref", "phrase").size > 0
    assert readers["language"].pair("coref", "phrase").size == 0

    # every layer and head of each stream equals a plain LxmertModel forward on one example
    adapter = build_model(cfg)
    examples = {ex.example_id: ex for ex in load_examples(cfg, "flickr30k")[0]}
    maps_of = {s: sorted(int(k) for k in r.file["attention/maps"]) for s, r in readers.items()}
    assert maps_of["cross"] == maps_of["language"] == maps_of["vision"] != []
    e = maps_of["cross"][0]
    example = examples[readers["cross"].example("id")[e].decode()]
    inp = example.inputs
    tok = adapter._tokenize([inp])
    feats = torch.from_numpy(inp.region_features)[None]
    boxes = torch.from_numpy(normalised_boxes(inp))[None]
    model = adapter.model
    with torch.no_grad():
        out = model(
            input_ids=tok.input_ids,
            attention_mask=tok.attention_mask,
            token_type_ids=tok.token_type_ids,
            visual_feats=feats,
            visual_pos=boxes,
            output_hidden_states=True,
            output_attentions=True,
        )
        text_emb = model.embeddings(tok.input_ids, tok.token_type_ids)
        image_emb = model.encoder.visn_fc(feats, boxes)
    nt, nr = int(n_text[e]), int(n_image[e])
    n_l, n_r = LAYERS["l_layers"], LAYERS["r_layers"]
    lang = [text_emb, *out.language_hidden_states]
    vis = [image_emb, *out.vision_hidden_states]
    expected_hidden = {
        "language": [h[0, :nt] for h in lang[: n_l + 1]],
        "vision": [h[0, :nr] for h in vis[: n_r + 1]],
        "cross": [
            torch.cat([t[0, :nt], v[0, :nr]]) for t, v in zip(lang[n_l:], vis[n_r:], strict=True)
        ],
    }
    expected_attn = {
        "language": [a[0] for a in out.language_attentions],
        "vision": [a[0] for a in out.vision_attentions],
    }
    for stream, reader in readers.items():
        lo, hi = reader.example("token_offset")[e : e + 2]
        hidden = torch.from_numpy(reader.file["tokens/hidden"][:, lo:hi])
        torch.testing.assert_close(hidden, torch.stack(expected_hidden[stream]), atol=1e-5, rtol=0)
        maps = torch.from_numpy(reader.file[f"attention/maps/{e}"][()])
        assert maps.shape == (reader.num_layers, 4, hi - lo, hi - lo)
        if stream in expected_attn:
            torch.testing.assert_close(maps, torch.stack(expected_attn[stream]), atol=1e-5, rtol=0)
    # cross: its text->image block is half of transformers' cross_encoder_attentions
    cross = torch.from_numpy(readers["cross"].file[f"attention/maps/{e}"][()])
    expected = torch.stack([a[0, :, :nt, :nr] for a in out.cross_encoder_attentions])
    torch.testing.assert_close(2 * cross[:, :, :nt, nt:], expected, atol=1e-5, rtol=0)
    # the vision stream has no [CLS]: its [CLS] mass is NaN, by design (verify accepts it)
    assert np.isnan(readers["vision"].file["attention/cls_mass"][()]).all()
    for reader in (root, *readers.values()):
        reader.close()


def test_stream_filter_and_text_only_data(compose_cfg, demo_root: Path) -> None:
    """``model.stream`` keeps the streams asked for; data without regions has no vision."""
    cfg = lxmert_cfg(compose_cfg, demo_root, ["dataset=visual_genome", "model.stream=vision"])
    reader = CacheReader(run_extraction(cfg, "visual_genome"))
    assert reader.streams == ["vision"]
    vision = reader.stream_reader("vision")
    assert vision.file["pairs/relation/attention"].shape[1:] == (1, 4, 2)
    assert vision.file["units/region/embedding"].shape[0] == 2  # vis00, vis01

    cfg = lxmert_cfg(compose_cfg, demo_root, ["dataset=senteval/past_present"])
    reader = CacheReader(run_extraction(cfg, "senteval/past_present"))
    assert reader.streams == ["cross", "language"]
    with pytest.raises(Exception, match="no stream 'vision'"):
        reader.stream_reader("vision")
    cfg = lxmert_cfg(
        compose_cfg, demo_root, ["dataset=senteval/past_present", "model.stream=vision"]
    )
    with pytest.raises(ValueError, match="model.stream=vision: no stream to cache"):
        run_extraction(cfg, "senteval/past_present")


def test_a_missing_stream_group_is_named(compose_cfg, demo_root: Path, tmp_path: Path):
    cfg = lxmert_cfg(compose_cfg, demo_root, ["dataset=visual_genome"])
    path = run_extraction(cfg, "visual_genome", tmp_path / "vg.h5")
    with h5py.File(path, "a") as f:
        del f["streams/language"]
    problems = verify_cache(path)
    assert problems == ["group streams/language is missing (a listed stream)"]


def _datasets(f: h5py.File) -> dict[str, h5py.Dataset]:
    out: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: object) -> None:  # returns None: visititems goes on
        if isinstance(obj, h5py.Dataset):
            out[name] = obj

    f.visititems(visit)
    return out


def test_shards_merge_into_the_one_process_cache(compose_cfg, demo_root: Path, tmp_path: Path):
    """Three shards (each stream's tables offset by the rows before) equal one writer."""
    extra = ["dataset=flickr30k", "extraction.parts=all", "extraction.batch_size=4"]
    cfg = lxmert_cfg(compose_cfg, demo_root, extra)
    single = run_extraction(cfg, "flickr30k", tmp_path / "single.h5")
    with open_dict(cfg):
        cfg.extraction.shards = 3
    merged = run_extraction(cfg, "flickr30k", tmp_path / "merged.h5")
    assert verify_cache(merged) == []
    with h5py.File(single, "r") as a, h5py.File(merged, "r") as b:
        da, db = _datasets(a), _datasets(b)
        assert sorted(da) == sorted(db)
        assert any(n.startswith("streams/vision/attention/maps/") for n in da)
        for name in da:
            np.testing.assert_array_equal(da[name][()], db[name][()], err_msg=name)
        for group in ("streams/cross", "streams/language", "streams/vision"):
            skip = {"created_utc"}
            attrs_a = {k: str(v) for k, v in a[group].attrs.items() if k not in skip}
            attrs_b = {k: str(v) for k, v in b[group].attrs.items() if k not in skip}
            assert attrs_a == attrs_b, group


def _run_task(compose_cfg, root: Path, task: str, extra: tuple[str, ...] = ()) -> list[dict]:
    from probes.run import run

    cfg = lxmert_cfg(
        compose_cfg, root, [f"task={task}", "debug=fast", "logger=none", *extra], "train_probe"
    )
    run(cfg)
    return read_run_results(Path(cfg.paths.output_dir) / "results.json").rows


# task -> the streams it reads on image-text data (the others lack a modality it needs)
STREAMS_READ = {
    "visual_relation": {"cross", "vision"},
    "visual_coreference": {"cross"},
    "cross_modal_alignment": {"cross"},
    "fusion_degree": {"cross"},
}


def test_layers_asked_for_are_probed_where_the_stream_has_them(compose_cfg, demo_root: Path):
    """``probing.layers=[1,3]``: X01, X03 on the cross stream, vis01 on the vision stream."""
    rows = _run_task(compose_cfg, demo_root, "visual_relation", ("probing.layers=[1,3]",))
    embedding = {(r["stream"], r["probe"]) for r in rows if r["input"] == "embedding"}
    assert embedding == {("cross", "layer_01"), ("cross", "layer_03"), ("vision", "layer_01")}


@pytest.mark.parametrize("task", sorted(STREAMS_READ))
def test_each_task_runs_on_every_stream_that_holds_its_tokens(
    compose_cfg, demo_root: Path, task: str, capsys: pytest.CaptureFixture
) -> None:
    rows = _run_task(compose_cfg, demo_root, task)
    assert {r["stream"] for r in rows} == STREAMS_READ[task]
    skipped = {"cross", "language", "vision"} - STREAMS_READ[task]
    printed = capsys.readouterr().out
    for stream in skipped:
        assert f"stream {stream} skipped: {task} reads" in printed
    layers = {"cross": 4, "vision": 2}  # X00..X03, vis00..vis01
    for stream in STREAMS_READ[task]:
        probes = {r.get("probe") for r in rows if r["stream"] == stream}
        if task == "visual_relation":
            embedding = {
                r["probe"] for r in rows if r["stream"] == stream and r["input"] == "embedding"
            }
            assert embedding == {f"layer_{k:02d}" for k in range(layers[stream])}
        assert probes


def test_linguistic_probes_the_text_streams(compose_cfg, demo_root: Path) -> None:
    rows = _run_task(
        compose_cfg, demo_root, "linguistic/past_present", ("task.baseline_model=null",)
    )
    by_stream = {
        s: {r["layer_name"] for r in rows if r["stream"] == s} for s in ("cross", "language")
    }
    assert by_stream == {
        "cross": {"X00", "X01", "X02", "X03"},
        "language": {"lang00", "lang01", "lang02"},
    }
    assert {r["model"] for r in rows} == {
        "lxmert[random-init]/cross",
        "lxmert[random-init]/language",
    }


def test_a_stream_asked_for_by_name_must_hold_the_tokens(compose_cfg, demo_root: Path):
    from probes.run import run

    cfg = lxmert_cfg(
        compose_cfg,
        demo_root,
        ["task=visual_relation", "debug=fast", "model.stream=language"],
        "train_probe",
    )
    with pytest.raises(ValueError, match="model.stream=language: visual_relation reads image"):
        run(cfg)  # refused in the prepare step: no logger run, no results
    out = Path(cfg.paths.output_dir)
    assert not (out / "results.json").exists() and not list(out.rglob("*.wandb"))
    with pytest.raises(ValueError, match="two-stream"):  # its cross stream is refused
        _run_task(compose_cfg, demo_root, "modality_importance")
