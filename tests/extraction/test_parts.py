"""Extraction writes the cache parts the task reads; a cache grows when another task needs more."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
from omegaconf import open_dict

from vlprobe.cache.reader import CacheError, CacheReader
from vlprobe.cache.schema import PARTS, expand_parts
from vlprobe.cache.verify import verify_cache
from vlprobe.extraction.pipeline import ensure_cache, run_extraction
from vlprobe.synthetic.stamp import build_demo
from vlprobe.testing.models import tiny_config

FEATURE_DIM = 64


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parts") / "value-mini"
    build_demo(
        root, scenes=16, seed=1, feature_dim=FEATURE_DIM, senteval_per_task=60, render_images=False
    )
    return root


@pytest.fixture
def cfg_for(compose_cfg, demo: Path, tmp_path: Path):
    def make(dataset: str, extra: list[str] | None = None):
        model = "text" if dataset.startswith("senteval/") else "visualbert"
        cfg = compose_cfg(
            [
                f"model={model}",
                f"data.root={demo}",
                "data.scenes=16",
                "data.seed=1",
                f"data.feature_dim={FEATURE_DIM}",
                f"dataset={dataset}",
                "extraction.progress=false",
                *(extra or []),
            ],
            config_name="extract",
        )
        with open_dict(cfg):
            cfg.model.pretrained = None
            cfg.model.config = tiny_config(model, feature_dim=FEATURE_DIM)
            cfg.paths.cache_dir = str(tmp_path / "cache")
        return cfg

    return make


def test_senteval_cache_holds_only_sentence_vectors(cfg_for, tmp_path: Path) -> None:
    dataset = "senteval/past_present"
    lean = CacheReader(ensure_cache(cfg_for(dataset), dataset, parts=("sentence",)))
    full_cfg = cfg_for(dataset)
    with open_dict(full_cfg):
        full_cfg.paths.cache_dir = str(tmp_path / "full")
    full = CacheReader(run_extraction(full_cfg, dataset))  # vlprobe extract: every part
    assert lean.parts == {"sentence"} and full.parts == set(PARTS)
    assert "tokens/hidden" not in lean.file and "tokens/hidden" in full.file
    assert not [g for g in ("units/region", "units/phrase", "pairs") if g in lean.file]
    for name in ("units/sentence/cls", "units/sentence/mean", "units/sentence/label"):
        assert np.array_equal(lean.array(name), full.array(name))  # the same vectors
    assert verify_cache(lean.path) == [] and verify_cache(full.path) == []
    # per-token states were most of the bytes (small files are mostly chunk overhead: compare
    # the data itself)
    assert _data_bytes(lean) < 0.3 * _data_bytes(full)


def _data_bytes(reader: CacheReader) -> int:
    sizes: list[int] = []
    reader.file.visititems(
        lambda _, obj: (
            sizes.append(obj.size * obj.dtype.itemsize) if isinstance(obj, h5py.Dataset) else None
        )
    )
    return sum(sizes)


def test_cache_grows_to_what_each_task_reads(cfg_for, caplog) -> None:
    cfg = cfg_for("flickr30k")
    path = ensure_cache(cfg, "flickr30k", parts=("phrase", "region", "coref"))
    assert CacheReader(path).parts == {"phrase", "region", "coref"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vlprobe.extraction.pipeline"):
        assert ensure_cache(cfg, "flickr30k", parts=("token_states",)) == path
    assert any("lacks token_states, which this run reads" in r.getMessage() for r in caplog.records)
    assert CacheReader(path).parts == {"phrase", "region", "coref", "token_states"}
    built = path.stat().st_mtime_ns
    ensure_cache(cfg, "flickr30k", parts=("coref",))  # held already: reused
    assert path.stat().st_mtime_ns == built


def test_opt_in_parts_and_require(cfg_for) -> None:
    dataset = "senteval/past_present"
    path = ensure_cache(
        cfg_for(dataset, ["extraction.parts=[token_states]"]), dataset, ("sentence",)
    )
    reader = CacheReader(path)
    assert reader.parts == {"sentence", "token_states"}
    reader.require(["sentence"], "linguistic/past_present")
    with pytest.raises(CacheError, match=r"lacks region, relation, which visual_relation reads"):
        reader.require(["relation"], "visual_relation")
    assert expand_parts(["coref"]) == {"coref", "phrase", "region"}
    with pytest.raises(ValueError, match="unknown cache part"):
        expand_parts(["tokens"])
