"""A data set changed in place is noticed on reuse: the cache is rebuilt and the log says why."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
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
