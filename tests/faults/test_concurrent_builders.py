"""Parallel builders of one cache: one builds, the others wait and reuse it; never corrupt.

Before the lock, a second builder truncated the first one's partial file, died with a
traceback, and the first published a cache whose first examples were zeros (issue 14).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import same_cache
from omegaconf import OmegaConf
from workers import build_together

from vlprobe.cache.schema import partial_files
from vlprobe.cache.verify import verify_cache
from vlprobe.extraction.pipeline import cache_path, run_extraction


@pytest.mark.parametrize("n", [2, 4])
def test_parallel_builders_share_one_build(builder_cfg, processes, tmp_path: Path, n: int) -> None:
    reference = run_extraction(builder_cfg("flickr30k", cache_dir=tmp_path / "alone"), "flickr30k")
    cfg = builder_cfg("flickr30k")
    ready = tmp_path / "ready"
    ready.mkdir()
    logs = [tmp_path / f"builder{i}.log" for i in range(n)]
    procs = [
        processes.Process(
            target=build_together,
            args=(OmegaConf.to_yaml(cfg), "flickr30k", str(ready), n, str(log)),
        )
        for log in logs
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * n
    texts = [log.read_text() for log in logs]
    assert sum("cache written" in t for t in texts) == 1, texts
    waited = [t for t in texts if "cache written" not in t]
    assert all("another process built it while this one waited" in t for t in waited), texts
    path = cache_path(cfg, "flickr30k")
    assert verify_cache(path) == []
    assert same_cache(path, reference) == []  # no zeroed examples, nothing torn
    assert partial_files(path) == []
