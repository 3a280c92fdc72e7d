"""Atomic publication, offsets, schema checks, and `vlprobe inspect`."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from vlprobe.cache.inspect import describe
from vlprobe.cache.reader import CacheError, CacheReader
from vlprobe.cache.records import LabelVocab
from vlprobe.cache.schema import PARTIAL_SUFFIX, SCHEMA_VERSION, partial_files
from vlprobe.cache.writer import CacheWriter
from vlprobe.cli import main as cli_main
from vlprobe.testing.planted import write_planted_relation_cache


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    with pytest.raises(RuntimeError), CacheWriter(path, {}, LabelVocab([], [], [])) as writer:
        assert partial_files(path) == [writer.partial]
        raise RuntimeError("killed")
    assert not path.exists() and partial_files(path) == []


def test_each_writer_has_its_own_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    vocab = LabelVocab([], [], [])
    with CacheWriter(path, {}, vocab) as first, CacheWriter(path, {}, vocab) as second:
        assert first.partial != second.partial
        assert partial_files(path) == sorted([first.partial, second.partial])
        assert first.partial.name.startswith("c.h5.") and first.partial.suffix == PARTIAL_SUFFIX


def test_reader_refuses_unfinished_and_missing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["complete"] = 0
    with pytest.raises(CacheError, match="not a finished"):
        CacheReader(bad)
    (tmp_path / f"gone.h5.123-ab{PARTIAL_SUFFIX}").write_bytes(b"")
    with pytest.raises(CacheError, match="did not finish"):
        CacheReader(tmp_path / "gone.h5")


def test_reader_refuses_a_partial_file_even_when_complete(tmp_path: Path) -> None:
    """A writer killed between setting ``complete`` and its rename leaves a whole file under
    its partial name: a cache only at the name it is published under."""
    whole = write_planted_relation_cache(tmp_path / "p.h5", num_images=4)
    partial = whole.with_name(f"p.h5.123-ab{PARTIAL_SUFFIX}")
    partial.write_bytes(whole.read_bytes())
    CacheReader(whole).close()
    with pytest.raises(CacheError, match=r"p.h5.123-ab.partial is an extraction's partial file"):
        CacheReader(partial)


def test_planted_cache_layout(tmp_path: Path) -> None:
    path = write_planted_relation_cache(tmp_path / "p.h5", num_images=20, num_layers=3)
    reader = CacheReader(path)
    f = reader.file
    assert f["tokens/hidden"].dtype == np.float16
    assert f["tokens/hidden"].shape[0] == 4  # layer-major: embeddings + 3 layers
    assert f["tokens/hidden"].chunks[0] == 1  # one layer per chunk: a layer reads alone
    offsets = reader.array("examples/token_offset")
    assert offsets[0] == 0 and offsets[-1] == f["tokens/modality"].shape[0]
    assert len(offsets) == f["examples/split"].shape[0] + 1
    assert reader.split_counts() == {"train": 16, "val": 2, "test": 2}
    # pairs sorted by example: subject unit ids never decrease by example
    owner = reader.array("units/region/example")[reader.array("pairs/relation/subject")]
    assert np.all(np.diff(owner) >= 0)


def test_inspect_prints_provenance_sizes_and_splits(tmp_path: Path, capsys) -> None:
    path = write_planted_relation_cache(tmp_path / "p.h5", num_images=10)
    text = describe(path)
    assert f"schema_version: {SCHEMA_VERSION}" in text and "model_name: planted" in text
    assert "train: 8" in text and "units/region/embedding" in text and "per example" in text
    assert cli_main(["inspect", str(path)]) == 0
    assert "tokens/hidden" in capsys.readouterr().out
