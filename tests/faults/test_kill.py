"""kill -9 at random points of an extraction: afterwards there is either the correct cache or
no cache (a clear error naming the partial file), and the next run builds the correct one.
A truncated or unfinished cache at the final path is rebuilt, never read."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import same_cache
from omegaconf import OmegaConf
from workers import build, noop

from vlprobe.cache.reader import CacheError, CacheReader
from vlprobe.cache.schema import PARTS, partial_files
from vlprobe.cache.verify import verify_cache
from vlprobe.extraction.pipeline import cache_path, ensure_cache

DATASET = "flickr30k"


def _kill_trials(
    builder_cfg, processes, tmp_path: Path, dataset: str, trials: int
) -> dict[str, int]:
    alone = builder_cfg(dataset, cache_dir=tmp_path / "alone")
    for target in (noop, build):  # start the server, then time one whole build as below
        started = time.perf_counter()
        proc = processes.Process(target=target, args=(OmegaConf.to_yaml(alone), dataset))
        proc.start()
        proc.join()
    full = time.perf_counter() - started
    reference = cache_path(alone, dataset)
    cfg = builder_cfg(dataset)
    path = cache_path(cfg, dataset)
    rng = np.random.default_rng(14)
    outcomes = {"no cache": 0, "correct cache": 0}
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
        if outcomes["correct cache"]:
            break
        span *= 2
    assert ensure_cache(cfg, dataset, PARTS) == path  # the next run: orphans removed, cache built
    assert same_cache(path, reference) == [] and partial_files(path) == []
    return outcomes


def test_kill_9_during_extraction(builder_cfg, processes, tmp_path: Path) -> None:
    outcomes = _kill_trials(builder_cfg, processes, tmp_path, "senteval/past_present", 20)
    assert outcomes["no cache"] > 0 and outcomes["correct cache"] > 0, outcomes


@pytest.mark.slow
def test_kill_9_during_extraction_many(builder_cfg, processes, tmp_path: Path) -> None:
    outcomes = _kill_trials(builder_cfg, processes, tmp_path, DATASET, 100)
    assert outcomes["no cache"] > 0 and outcomes["correct cache"] > 0, outcomes


@pytest.mark.parametrize("damage", ["truncated", "unfinished", "dataset deleted"])
def test_damaged_cache_is_rebuilt(builder_cfg, tmp_path: Path, caplog, damage: str) -> None:
    import h5py

    cfg = builder_cfg(DATASET)
    path = ensure_cache(cfg, DATASET)
    reference = tmp_path / "reference.h5"
    reference.write_bytes(path.read_bytes())
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    else:
        with h5py.File(path, "r+") as f:
            if damage == "unfinished":
                f.attrs["complete"] = 0
            else:
                del f["tokens/word_index"]
    with caplog.at_level(logging.INFO, logger="vlprobe.extraction.pipeline"):
        assert ensure_cache(cfg, DATASET) == path
    assert [r for r in caplog.records if "is unusable" in r.getMessage()]
    assert verify_cache(path) == [] and same_cache(path, reference) == []
