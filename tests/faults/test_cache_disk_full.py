"""A full disk while extracting or merging shards: one line naming the file and the way out
(`vlprobe extract: error: no space left on device writing <cache>: free space or set
paths.cache_dir=...`), exit code 2, no partial file left (before: a segfault or HDF5
tracebacks, and the partial file stayed). The disk is filled by making HDF5's writes fail
with ENOSPC, as the OS reports it and as HDF5 words it."""

from __future__ import annotations

import errno
import logging
import shutil
import sys
from pathlib import Path

import h5py
import pytest
from conftest import DEMO

from vlprobe.cache.schema import partial_files
from vlprobe.cli import main as vlprobe
from vlprobe.extraction.pipeline import cache_path, run_extraction

FULL = {
    "os": lambda: OSError(errno.ENOSPC, "No space left on device"),
    "hdf5": lambda: OSError(  # errno only inside HDF5's message, as h5py raises it
        "Can't write data (file write failed: time = Sun Dec  6 20:00:00 2026, filename = "
        "'x.partial', file descriptor = 7, errno = 28, error message = 'No space left on "
        "device', buf = 0x55, total write size = 4096, bytes this sub-write = 4096, bytes "
        "actually written = 18446744073709551615, offset = 0)"
    ),
}


def _fill_disk_after(monkeypatch, writes: int, how: str, only: str = "") -> None:
    """Dataset writes (into files whose path contains ``only``, shards left out when it is
    given) fail after ``writes``."""
    original = h5py.Dataset.__setitem__
    left = [writes]

    def write(self, key, value):
        name = self.file.filename
        if only in name and not (only and ".shards/" in name):
            left[0] -= 1
            if left[0] < 0:
                raise FULL[how]()
        return original(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", write)


@pytest.fixture
def own_demo(fault_demo: Path, tmp_path: Path) -> Path:
    root = tmp_path / "value-mini"
    shutil.copytree(fault_demo, root)
    return root


def _left_beside(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name != f"{path.name}.lock"]


@pytest.mark.parametrize("how", ["os", "hdf5"])
def test_disk_full_during_extraction(builder_cfg, monkeypatch, how: str) -> None:
    cfg = builder_cfg("senteval/past_present")
    out = cache_path(cfg, "senteval/past_present")
    _fill_disk_after(monkeypatch, 40, how)
    with pytest.raises(OSError) as info:
        run_extraction(cfg, "senteval/past_present")
    assert str(info.value) == (
        f"no space left on device writing {out}: free space or set paths.cache_dir=... "
        "(a folder on a disk with room)"
    )
    assert _left_beside(out) == []  # no cache, no partial file


def test_disk_full_during_the_shard_merge(builder_cfg, monkeypatch) -> None:
    cfg = builder_cfg("flickr30k", shards=3)
    out = cache_path(cfg, "flickr30k")
    _fill_disk_after(monkeypatch, 5, "hdf5", only=".partial")  # shards write, the merge not
    monkeypatch.setattr("vlprobe.cache.shards.COPY_BYTES", 1 << 10)  # many small writes
    with pytest.raises(OSError, match=f"^no space left on device writing {out}: "):
        run_extraction(cfg, "flickr30k")
    assert not out.exists() and partial_files(out) == []
    shards = sorted(out.with_name(out.name + ".shards").iterdir())
    assert [p.name for p in shards] == [f"shard-{i:05d}-of-00003.h5" for i in range(3)]
    monkeypatch.undo()  # room again: the rerun merges the kept shards
    assert run_extraction(cfg, "flickr30k") == out and out.exists()


def test_cli_says_it_in_one_line_with_exit_2(own_demo: Path, tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "cache" / "s.h5"
    _fill_disk_after(monkeypatch, 10, "hdf5")
    monkeypatch.setattr(sys, "argv", ["vlprobe"])
    # main's logging.basicConfig may hold the stderr an earlier test captured: start afresh
    monkeypatch.setattr(logging.root, "handlers", [])
    capsys.readouterr()
    code = vlprobe(
        [
            "extract",
            "model=text",
            "dataset=senteval/past_present",
            f"data.root={own_demo}",
            *(f"data.{k}={v}" for k, v in DEMO.items()),
            "extraction.progress=false",
            f"out={out}",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (
        f"vlprobe extract: error: no space left on device writing {out}: free space or set "
        "paths.cache_dir=... (a folder on a disk with room)"
    )
    assert not any("Traceback" in line or "HDF5-DIAG" in line for line in err), err
    assert _left_beside(out) == []


def test_no_room_for_the_next_batch_stops_before_hdf5_writes(builder_cfg, monkeypatch) -> None:
    """A disk with less room than a batch needs stops the writer before HDF5 fails a write
    (after which its file cannot be closed cleanly: a segfault at exit, on a real disk)."""
    cfg = builder_cfg("senteval/past_present")
    out = cache_path(cfg, "senteval/past_present")
    usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(p)._replace(free=1 << 20))
    writes = []
    original = h5py.Dataset.__setitem__
    monkeypatch.setattr(h5py.Dataset, "__setitem__", lambda *a: writes.append(1) or original(*a))
    with pytest.raises(OSError, match=f"^no space left on device writing {out}: free space"):
        run_extraction(cfg, "senteval/past_present")
    assert writes == [] and _left_beside(out) == []
