"""LXMERT's language and vision streams: their own caches, layer names, and probes on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import open_dict

from probes.run import run
from vlprobe.cache.reader import CacheReader
from vlprobe.extraction.pipeline import run_extraction
from vlprobe.synthetic import make_demo_data
from vlprobe.testing.models import tiny_config

DIM = 32


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lxmert-streams")
    make_demo_data(root, scenes=16, seed=1, feature_dim=DIM, senteval_per_task=60)
    return root


def _cfg(compose_cfg, root: Path, stream: str, extra: list[str], config_name: str):
    cfg = compose_cfg(
        [
            "model=lxmert_small",
            f"model.stream={stream}",
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
        cfg.model.config = tiny_config("lxmert", feature_dim=DIM)
    return cfg


def test_vision_stream_cache_and_relation_probe(compose_cfg, demo_root: Path) -> None:
    cfg = _cfg(compose_cfg, demo_root, "vision", ["dataset=visual_genome"], "extract")
    reader = CacheReader(run_extraction(cfg, "visual_genome"))
    assert reader.layer_names == ["vis00", "vis01"]
    assert reader.attr("model_name") == "lxmert-vision"
    assert (reader.array("examples/n_text") == 0).all()
    assert np.isnan(reader.file["attention/cls_mass"][()].astype(np.float32)).all()
    assert reader.file["pairs/relation/attention"].shape[1:] == (1, 4, 2)

    cfg = _cfg(
        compose_cfg, demo_root, "vision", ["task=visual_relation", "debug=fast"], "train_probe"
    )
    run(cfg)
    rows = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    embedding = {r["probe"] for r in rows if r["input"] == "embedding"}
    assert embedding == {"layer_00", "layer_01"}  # vis00, vis01 (the figures' tick labels)


def test_language_stream_cache_and_linguistic_probe(compose_cfg, demo_root: Path) -> None:
    cfg = _cfg(
        compose_cfg,
        demo_root,
        "language",
        ["task=linguistic/past_present", "task.baseline_model=null", "debug=fast"],
        "train_probe",
    )
    run(cfg)
    rows = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert {r["layer"] for r in rows} == {"lang00", "lang01"}

    cfg = _cfg(compose_cfg, demo_root, "language", ["dataset=flickr30k"], "extract")
    with pytest.raises(ValueError, match="text tokens only"):
        run_extraction(cfg, "flickr30k")
