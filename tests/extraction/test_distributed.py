"""Extraction as a Lightning predict stage: 2 processes (gloo, ddp) give the 1-process cache.

Every dataset of the merged cache equals the one-process cache exactly (values, dtype, shape,
chunks); a run killed mid-way redoes only the shards it had not published.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from vlprobe.cache.shards import ShardPlan
from vlprobe.extraction.extract import sort_for_cache
from vlprobe.extraction.pipeline import build_model, load_examples, run_extraction
from vlprobe.extraction.predict import extract
from vlprobe.synthetic import make_demo_data

FEATURE_DIM = 64
TINY = [
    "model=visualbert",
    "model.pretrained=null",
    "+model.config.hidden_size=32",
    "+model.config.num_attention_heads=4",
    "+model.config.intermediate_size=64",
    "+model.config.num_hidden_layers=2",
    f"+model.config.visual_embedding_dim={FEATURE_DIM}",
]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("value-mini")
    make_demo_data(root, scenes=30, seed=3, feature_dim=FEATURE_DIM, senteval_per_task=20)
    return root


def _overrides(root: Path, dataset: str) -> list[str]:
    return [
        *TINY,
        f"data.root={root}",
        "data.make_demo=false",
        f"data.feature_dim={FEATURE_DIM}",
        f"dataset={dataset}",
        "extraction.progress=false",
        "extraction.batch_size=4",
        "extraction.max_attention_maps=3",
        "extraction.accelerator=cpu",
    ]


def assert_same_cache(a: Path, b: Path) -> None:
    """Same datasets (names, shapes, dtypes, chunks, values) and attributes but creation time."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a: list[str] = []
        names_b: list[str] = []
        fa.visititems(lambda n, o: names_a.append(n) if isinstance(o, h5py.Dataset) else None)
        fb.visititems(lambda n, o: names_b.append(n) if isinstance(o, h5py.Dataset) else None)
        assert sorted(names_a) == sorted(names_b)
        for name in names_a:
            da, db = fa[name], fb[name]
            assert (da.shape, da.dtype, da.chunks) == (db.shape, db.dtype, db.chunks), name
            assert (da.compression, da.fletcher32) == (db.compression, db.fletcher32), name
            np.testing.assert_array_equal(da[()], db[()], err_msg=name)
        skip = {"created_utc"}
        attrs_a = {k: str(v) for k, v in fa.attrs.items() if k not in skip}
        attrs_b = {k: str(v) for k, v in fb.attrs.items() if k not in skip}
        assert attrs_a == attrs_b
        assert fa.attrs["complete"] == 1


# flickr30k: phrases, coreference pairs, attention maps; relations are merged across 3 shards
# in the rerun test below, so the Visual Genome run of 2 processes (~40 s here) is slow-only
@pytest.mark.parametrize(
    "dataset", ["flickr30k", pytest.param("visual_genome", marks=pytest.mark.slow)]
)
def test_two_ddp_processes_give_the_one_process_cache(
    compose_cfg, demo_root: Path, tmp_path: Path, dataset: str
) -> None:
    overrides = _overrides(demo_root, dataset)
    cfg = compose_cfg(overrides, config_name="extract")
    single = run_extraction(cfg, dataset, tmp_path / "single.h5")
    with h5py.File(single, "r") as f:  # the datasets whose merge shifts values are non-trivial
        assert len(f["attention/maps"]) >= 1 and f["units/region/example"][-1] > 0
        pairs = "pairs/relation/subject" if dataset == "visual_genome" else "pairs/coref/phrase"
        assert f[pairs].shape[0] > 0
    merged = tmp_path / "ddp.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlprobe.cli",
            "extract",
            *overrides,
            "extraction.devices=2",
            "extraction.strategy=ddp",
            f"out={merged}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("cache written") == 1  # rank 0 reports, rank 1 stays quiet
    assert not merged.with_name(merged.name + ".shards").exists()  # shards removed
    assert_same_cache(single, merged)


def test_a_rerun_after_a_kill_redoes_only_unfinished_shards(
    compose_cfg, demo_root: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg(_overrides(demo_root, "visual_genome"), config_name="extract")
    single = run_extraction(cfg, "visual_genome", tmp_path / "single.h5")
    examples, _ = load_examples(cfg, "visual_genome")
    with h5py.File(single, "r") as f:
        attrs = {
            k: v for k, v in f.attrs.items() if k.startswith(("dataset_", "extraction_", "input_"))
        }
    adapter = build_model(cfg)
    encode = adapter.encode
    encoded: list[str] = []
    shard_1_start = ShardPlan.for_cache(single, sort_for_cache(examples), 3, "").bounds[1][0]
    first_of_shard_1 = sort_for_cache(examples)[shard_1_start].example_id
    kill = {"armed": True}

    id_of = {id(ex.inputs): ex.example_id for ex in examples}

    def counting_encode(batch):
        ids = [id_of[id(inputs)] for inputs in batch]
        if kill["armed"] and first_of_shard_1 in ids:
            raise RuntimeError("killed mid-extraction")
        encoded.extend(ids)
        return encode(batch)

    adapter.encode = counting_encode
    out = tmp_path / "resumed.h5"
    kwargs = {"batch_size": 4, "max_attention_maps": 3, "progress": False, "shards": 3}
    with pytest.raises(RuntimeError, match="killed"):
        extract(examples, adapter, out, attrs, **kwargs)
    shard_dir = out.with_name(out.name + ".shards")
    published = sorted(p.name for p in shard_dir.iterdir())
    assert published == ["shard-00000-of-00003.h5"]  # the shard being written was dropped
    assert not out.exists()
    done_before = len(encoded)
    assert done_before == shard_1_start
    kill["armed"] = False
    encoded.clear()
    extract(examples, adapter, out, attrs, **kwargs)
    assert len(encoded) == len(examples) - done_before  # shard 0 was not encoded again
    assert_same_cache(single, out)
