"""Synthetic data -> real readers -> extraction with tiny random models -> cache -> read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import open_dict

from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import partial_files
from vlprobe.data.builders import build_flickr_examples
from vlprobe.data.region_features import load_region_features
from vlprobe.extraction.pipeline import build_model, cache_path, run_extraction
from vlprobe.synthetic import make_demo_data
from vlprobe.testing.models import tiny_config

FEATURE_DIM = 64


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("value-mini")
    make_demo_data(root, scenes=16, seed=1, feature_dim=FEATURE_DIM, senteval_per_task=60)
    return root


def _cfg(compose_cfg, root: Path, model: str, dataset: str, extra: list[str] | None = None):
    cfg = compose_cfg(
        [
            f"model={model}",
            f"data.root={root}",
            "data.make_demo=false",
            f"data.feature_dim={FEATURE_DIM}",
            f"dataset={dataset}",
            "extraction.progress=false",
            "extraction.batch_size=4",
            *(extra or []),
        ],
        config_name="extract",
    )
    with open_dict(cfg):
        cfg.model.pretrained = None
        cfg.model.config = tiny_config(cfg.model.name, feature_dim=FEATURE_DIM)
        cfg.paths.cache_dir = str(root.parent / f"cache-{root.name}")
    return cfg


@pytest.mark.parametrize("model", ["visualbert", "lxmert", "vilt"])
def test_flickr_roundtrip(compose_cfg, demo_root: Path, model: str) -> None:
    cfg = _cfg(compose_cfg, demo_root, model, "flickr30k")
    path = run_extraction(cfg, "flickr30k")
    assert path == cache_path(cfg, "flickr30k") and path.exists()
    assert partial_files(path) == []
    reader = CacheReader(path)
    if model == "lxmert":  # one group per stream: the cross-modality one has both modalities
        assert reader.streams == ["cross", "language", "vision"]
        reader = reader.stream_reader("cross")
    f = reader.file
    # provenance
    assert reader.attr("model_name") == model and reader.attr("model_revision") == "random-init"
    assert len(str(reader.attr("model_config_hash"))) == 64
    assert reader.attr("dataset_kind") == "flickr30k" and len(reader.attr("dataset_hash")) == 64
    assert reader.attr("extraction_settings")["dtype"] == "float16"
    # shapes and dtypes
    num_hidden = reader.num_layers + 1
    assert len(reader.layer_names) == num_hidden
    hidden = f["tokens/hidden"]
    assert hidden.dtype == np.float16 and hidden.shape[0] == num_hidden
    assert hidden.shape[2] == reader.hidden_size
    offsets = reader.array("examples/token_offset")
    assert offsets[-1] == hidden.shape[1]
    n_text, n_image = reader.array("examples/n_text"), reader.array("examples/n_image")
    assert np.array_equal(np.diff(offsets), n_text + n_image) and (n_image > 0).all()
    assert f["pairs/coref/attention"].shape[1:] == (reader.num_layers, reader.num_heads, 2)
    # attention: full maps' rows sum to 1; the [CLS] mass over both modalities too
    maps = f["attention/maps"]
    first = maps[sorted(maps, key=int)[0]][()].astype(np.float32)
    np.testing.assert_allclose(first.sum(-1), 1.0, atol=2e-2)
    np.testing.assert_allclose(f["attention/cls_mass"][()].astype(np.float32).sum(-1), 1, atol=2e-2)
    # a phrase's tokens map to its words
    examples = build_flickr_examples(
        demo_root / "flickr30k", load_region_features(demo_root / "features" / "butd.tsv")
    )
    by_id = {ex.example_id: ex for ex in examples}
    ids = [i.decode() for i in f["examples/id"][()]]
    text = [t.decode() for t in f["examples/text"][()]]
    span = reader.array("units/phrase/word_span")
    owner = reader.array("units/phrase/example")
    assert len(span) > 0
    for p in range(min(len(span), 20)):
        ex = by_id[ids[owner[p]]]
        assert text[owner[p]] == " ".join(ex.inputs.words)
        start, end = span[p]
        assert any((ph.word_start, ph.word_end) == (start, end) for ph in ex.phrases)
        words = reader.array("tokens/word_index")[offsets[owner[p]] : offsets[owner[p] + 1]]
        assert set(range(start, end)) <= set(words[words >= 0].tolist())
    # splits by image: no image in two splits
    groups = reader.array("examples/group")
    splits = reader.example_split
    for g in set(groups.tolist()):
        assert len(set(splits[groups == g].tolist())) == 1


def test_from_pretrained_path_gives_the_same_cache(compose_cfg, demo_root: Path, tmp_path) -> None:
    cfg = _cfg(compose_cfg, demo_root, "visualbert", "visual_genome")
    adapter = build_model(cfg)
    folder = tmp_path / "ckpt"
    adapter.save_pretrained(folder)
    direct = run_extraction(cfg, "visual_genome", tmp_path / "direct.h5")
    with open_dict(cfg):
        cfg.model.pretrained = str(folder)
        cfg.model.config = {}
    loaded = run_extraction(cfg, "visual_genome", tmp_path / "loaded.h5")
    a, b = CacheReader(direct).file, CacheReader(loaded).file
    np.testing.assert_array_equal(a["tokens/hidden"][()], b["tokens/hidden"][()])
    np.testing.assert_array_equal(
        a["pairs/relation/attention"][()], b["pairs/relation/attention"][()]
    )
    assert a["pairs/relation/related"][()].sum() > 0
    assert json.loads(b.attrs["label_names"])["predicate"]


def test_senteval_text_only_cache(compose_cfg, demo_root: Path) -> None:
    cfg = _cfg(compose_cfg, demo_root, "text", "senteval/past_present")
    with open_dict(cfg):
        cfg.model.config = {
            "num_hidden_layers": 2,
            "hidden_size": 32,
            "num_attention_heads": 4,
            "intermediate_size": 64,
        }
    reader = CacheReader(run_extraction(cfg, "senteval/past_present"))
    labels = reader.label_names["sentence"]
    assert sorted(labels) == ["PAST", "PRES"]
    assert reader.file["units/sentence/cls"].shape[1] == reader.file["examples/split"].shape[0]
    assert reader.array("examples/n_image").sum() == 0


def test_demo_data_is_rebuilt_when_its_settings_change(tmp_path: Path) -> None:
    from vlprobe.synthetic.stamp import demo_settings, is_current, write_stamp

    write_stamp(tmp_path, demo_settings(300, 0, 2048))
    assert is_current(tmp_path, demo_settings(300, 0, 2048))
    assert not is_current(tmp_path, demo_settings(50, 0, 2048))
    (tmp_path / "DONE").write_text("complete\n")  # an old-style or damaged stamp
    assert not is_current(tmp_path, demo_settings(300, 0, 2048))
