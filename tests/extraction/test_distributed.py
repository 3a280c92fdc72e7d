"""Extraction as a Lightning predict stage: 2 processes (gloo, ddp) give the 1-process cache.

Every dataset of the merged cache equals the one-process cache exactly (values, dtype, shape,
chunks), for a one-sequence model and for LXMERT's three streams; a run killed mid-way redoes
only the shards it had not published.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from vlprobe.cache.reader import CacheError, CacheReader
from vlprobe.cache.shards import ShardPlan
from vlprobe.cache.verify import table_groups, verify_cache
from vlprobe.extraction.extract import sort_for_cache
from vlprobe.extraction.pipeline import build_model, load_examples, run_extraction
from vlprobe.extraction.predict import extract
from vlprobe.synthetic import make_demo_data

FEATURE_DIM = 64
TINY = {
    "visualbert": [
        "model=visualbert",
        "model.pretrained=null",
        "+model.config.hidden_size=32",
        "+model.config.num_attention_heads=4",
        "+model.config.intermediate_size=64",
        "+model.config.num_hidden_layers=2",
        f"+model.config.visual_embedding_dim={FEATURE_DIM}",
    ],
    # every stream cached, each of its own depth: a stream's tables and layer axes are its own
    "lxmert": [
        "model=lxmert_small",
        "model.config.hidden_size=32",
        "model.config.num_attention_heads=4",
        "model.config.intermediate_size=64",
        "model.config.l_layers=2",
        "model.config.r_layers=1",
        "model.config.x_layers=3",
    ],
}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("value-mini")
    make_demo_data(root, scenes=30, seed=3, feature_dim=FEATURE_DIM, senteval_per_task=20)
    return root


def _overrides(root: Path, dataset: str, model: str = "visualbert") -> list[str]:
    return [
        *TINY[model],
        f"data.root={root}",
        "data.make_demo=false",
        f"data.feature_dim={FEATURE_DIM}",
        f"dataset={dataset}",
        "extraction.progress=false",
        "extraction.batch_size=4",
        "extraction.max_attention_maps=3",
        "extraction.accelerator=cpu",
    ]


def _members(f: h5py.File, kind: type) -> list[str]:
    names: list[str] = [""] if kind is h5py.Group else []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, kind) else None)
    return sorted(names)


def _attrs(group: h5py.Group) -> dict[str, str]:
    """Attributes but the creation time (and its digest among the checksums)."""
    attrs = {k: str(v) for k, v in group.attrs.items() if k != "created_utc"}
    if "checksums" in attrs:
        sealed = json.loads(attrs["checksums"])
        sealed["attrs"].pop("created_utc", None)
        attrs["checksums"] = json.dumps(sealed, sort_keys=True)
    return attrs


def assert_same_cache(a: Path, b: Path) -> None:
    """Same datasets (names, shapes, dtypes, chunks, values), and the same attributes but
    creation time on the file and on every group (a stream's group has its own)."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names = _members(fa, h5py.Dataset)
        assert names == _members(fb, h5py.Dataset)
        for name in names:
            da, db = fa[name], fb[name]
            assert (da.shape, da.dtype, da.chunks) == (db.shape, db.dtype, db.chunks), name
            assert (da.compression, da.fletcher32) == (db.compression, db.fletcher32), name
            np.testing.assert_array_equal(da[()], db[()], err_msg=name)
        groups = _members(fa, h5py.Group)
        assert groups == _members(fb, h5py.Group)
        for group in groups:
            assert _attrs(fa[group or "/"]) == _attrs(fb[group or "/"]), group or "/"
        assert fa.attrs["complete"] == 1


# flickr30k: phrases, coreference pairs, attention maps; relations are merged across 3 shards
# in the rerun test below, so the Visual Genome run of 2 processes (~40 s here) is slow-only
@pytest.mark.parametrize(
    ("model", "dataset"),
    [
        ("visualbert", "flickr30k"),
        pytest.param("visualbert", "visual_genome", marks=pytest.mark.slow),
        ("lxmert", "flickr30k"),
        pytest.param("lxmert", "visual_genome", marks=pytest.mark.slow),
    ],
)
def test_two_ddp_processes_give_the_one_process_cache(
    compose_cfg, demo_root: Path, tmp_path: Path, model: str, dataset: str
) -> None:
    overrides = _overrides(demo_root, dataset, model)
    cfg = compose_cfg(overrides, config_name="extract")
    single = run_extraction(cfg, dataset, tmp_path / "single.h5")
    with h5py.File(single, "r") as f:  # the datasets whose merge shifts values are non-trivial
        groups = table_groups(f)  # each stream's tables (one-sequence: the file's)
        streams = ["streams/cross/", "streams/language/", "streams/vision/"]
        assert list(groups) == {"visualbert": [""], "lxmert": streams}[model]
        for prefix, group in groups.items():
            assert group is not None and len(group["attention/maps"]) >= 1, prefix
            # units whose example rows the merge shifts (a caption's tokens only, on Visual
            # Genome: the language stream holds no unit there)
            owners = [group[f"units/{unit}/example"] for unit in ("region", "phrase")]
            no_units = (prefix, dataset) == ("streams/language/", "visual_genome")
            assert no_units or any(o.size and o[-1] > 0 for o in owners), prefix
        pairs = "pairs/relation/subject" if dataset == "visual_genome" else "pairs/coref/phrase"
        assert next(iter(groups.values()))[pairs].shape[0] > 0  # the file's, or cross's
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
    assert proc.stderr.count("cache written: ") == 1  # in the log too
    assert not merged.with_name(merged.name + ".shards").exists()  # shards removed
    assert verify_cache(merged) == []
    assert_same_cache(single, merged)


@pytest.mark.parametrize(
    ("examples", "shards", "batch", "bounds"),
    [
        (150, 2, 4, [(0, 76), (76, 150)]),  # 38 batches, 19 each: not 75, mid-batch
        (10, 3, 4, [(0, 4), (4, 8), (8, 10)]),
        (10, 5, 4, [(0, 4), (4, 8), (8, 10)]),  # at most one shard per batch
        (5, 2, 1, [(0, 2), (2, 5)]),
    ],
)
def test_shards_are_cut_between_batches(
    tmp_path: Path, examples: int, shards: int, batch: int, bounds: list
) -> None:
    """A batch is never split: each holds the examples (and padding) of a one-process run."""
    ordered = [SimpleNamespace(example_id=str(i)) for i in range(examples)]
    plan = ShardPlan.for_cache(tmp_path / "c.h5", ordered, shards, "", batch)  # type: ignore[arg-type]
    assert plan.bounds == bounds


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
    shard_1_start = ShardPlan.for_cache(single, sort_for_cache(examples), 3, "", 4).bounds[1][0]
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
    shard = shard_dir / published[0]  # complete, but a third of the examples: never read
    with pytest.raises(CacheError, match="shard-00000-of-00003.h5 is shard 1 of 3 of a cache"):
        CacheReader(shard)
    assert verify_cache(shard)[0].startswith("shard 1 of 3 of a cache still being extracted")
    done_before = len(encoded)
    assert done_before == shard_1_start
    kill["armed"] = False
    encoded.clear()
    extract(examples, adapter, out, attrs, **kwargs)
    assert len(encoded) == len(examples) - done_before  # shard 0 was not encoded again
    assert_same_cache(single, out)
