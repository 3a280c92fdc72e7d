"""kill -9 at random points of an extraction: afterwards there is either the correct cache or
no cache (a clear error naming the partial file), nothing left beside it that a reader takes
for a cache, and the next run builds the correct one. A truncated, unfinished or damaged
cache at the final path (a stream's dataset deleted, too) is named, rebuilt, never read."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import same_cache
from omegaconf import OmegaConf
from workers import build, noop

from vlprobe.cache.reader import CacheError, CacheReader
from vlprobe.cache.schema import PARTS, partial_files
from vlprobe.cache.verify import verify_cache
from vlprobe.cli import main as vlprobe
from vlprobe.extraction.pipeline import cache_path, ensure_cache

DATASET = "flickr30k"


def _left_behind(path: Path) -> tuple[list[Path], list[Path]]:
    """What a killed build left beside the cache at ``path``: partial files and shards."""
    shard_dir = path.with_name(path.name + ".shards")
    in_shards = sorted(shard_dir.iterdir()) if shard_dir.is_dir() else []
    published = [p for p in in_shards if p.suffix == ".h5"]
    return [*partial_files(path), *in_shards], published


def _kill_trials(
    builder_cfg, processes, tmp_path: Path, dataset: str, trials: int, **options
) -> dict[str, int]:
    """``options``: the model and shards of ``builder_cfg``."""
    alone = builder_cfg(dataset, cache_dir=tmp_path / "alone", **options)
    for target in (noop, build):  # start the server, then time one whole build as below
        started = time.perf_counter()
        proc = processes.Process(target=target, args=(OmegaConf.to_yaml(alone), dataset))
        proc.start()
        proc.join()
    full = time.perf_counter() - started
    reference = cache_path(alone, dataset)
    cfg = builder_cfg(dataset, **options)
    path = cache_path(cfg, dataset)
    rng = np.random.default_rng(14)
    outcomes = {"no cache": 0, "correct cache": 0, "shards kept": 0}
    span = full * 1.3
    # a loaded machine builds slower than the timed build: until some trial outlives a whole
    # build, stretch the kill points (at most three times), so they cover publication too
    for _ in range(4):
        for trial in range(trials):
            # kill points spread over the whole build: reading, model, extraction, publication
            delay = span * (trial + rng.uniform()) / trials
            proc = processes.Process(target=build, args=(OmegaConf.to_yaml(cfg), dataset))
            proc.start()
            proc.join(timeout=delay)
            proc.kill()
            proc.join()
            if path.exists():
                assert verify_cache(path) == [] and same_cache(path, reference) == []
                outcomes["correct cache"] += 1
                path.unlink()  # the next trial extracts again
            else:
                with pytest.raises(CacheError, match="no cache at"):
                    CacheReader(path)
                outcomes["no cache"] += 1
            left, published = _left_behind(path)
            for file in left:  # partial files (complete or not) and published shards
                with pytest.raises(CacheError, match="partial file, not a cache|is shard "):
                    CacheReader(file)
            outcomes["shards kept"] += bool(published)  # the next trial resumes them
        if outcomes["correct cache"]:
            break
        span *= 2
    assert ensure_cache(cfg, dataset, PARTS) == path  # the next run: orphans removed, cache built
    assert same_cache(path, reference) == [] and _left_behind(path) == ([], [])
    return outcomes


@pytest.mark.parametrize(
    ("dataset", "options", "trials"),
    [
        ("senteval/past_present", {}, 20),
        # LXMERT, every stream (a group each), in 3 shards: a kill after a shard was published
        # leaves it for the next trial to resume, one during the merge leaves a partial cache
        ("flickr30k", {"model": "lxmert", "shards": 3}, 12),
    ],
    ids=["text", "lxmert-streams-sharded"],
)
def test_kill_9_during_extraction(
    builder_cfg, processes, tmp_path: Path, dataset: str, options: dict, trials: int
) -> None:
    outcomes = _kill_trials(builder_cfg, processes, tmp_path, dataset, trials, **options)
    assert outcomes["no cache"] > 0 and outcomes["correct cache"] > 0, outcomes
    if options.get("shards"):
        assert outcomes["shards kept"] > 0, outcomes


@pytest.mark.slow
def test_kill_9_during_extraction_many(builder_cfg, processes, tmp_path: Path) -> None:
    outcomes = _kill_trials(builder_cfg, processes, tmp_path, DATASET, 100)
    assert outcomes["no cache"] > 0 and outcomes["correct cache"] > 0, outcomes


def _damage(path: Path, damage: str) -> str:
    """Damage the cache at ``path``; returns the first problem ``verify_cache`` must name."""
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        return "not a readable HDF5 file (truncated or corrupted)"
    with h5py.File(path, "r+") as f:
        if damage == "unfinished":
            f.attrs["complete"] = 0
            return "no 'complete' flag: its extraction did not finish"
        if damage == "dataset deleted":
            del f["tokens/word_index"]
            return "dataset tokens/word_index is missing (tokens group)"
        if damage == "stream dataset deleted":
            del f["streams/vision/units/region/box"]
            return "dataset streams/vision/units/region/box is missing (region group)"
        assert damage == "stream map deleted"  # one example's full attention maps, one stream
        first = min(f["streams/vision/attention/maps"], key=int)
        del f[f"streams/vision/attention/maps/{first}"]
        return (
            f"streams/vision/attention/maps lacks the maps of examples [{first}], which "
            "another stream holds"
        )


@pytest.mark.parametrize(
    ("model", "damage"),
    [
        (None, "truncated"),
        (None, "unfinished"),
        (None, "dataset deleted"),
        ("lxmert", "stream dataset deleted"),
        ("lxmert", "stream map deleted"),
    ],
)
def test_damaged_cache_is_named_and_rebuilt(
    builder_cfg, tmp_path: Path, caplog, capsys, model: str | None, damage: str
) -> None:
    cfg = builder_cfg(DATASET, model=model)
    path = ensure_cache(cfg, DATASET, PARTS)
    reference = tmp_path / "reference.h5"
    reference.write_bytes(path.read_bytes())
    problem = _damage(path, damage)
    assert verify_cache(path)[0].startswith(problem)
    capsys.readouterr()
    assert vlprobe(["verify", str(path)]) == 1
    assert problem in capsys.readouterr().err
    with pytest.raises(CacheError, match="cannot be read|not a finished|is broken"):
        CacheReader(path)
    with caplog.at_level(logging.INFO, logger="vlprobe.extraction.pipeline"):
        assert ensure_cache(cfg, DATASET, PARTS) == path
    assert [r for r in caplog.records if "is unusable" in r.getMessage()]
    assert verify_cache(path) == [] and same_cache(path, reference) == []
