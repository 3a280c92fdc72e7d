"""The field declaration is the cache: what the writer writes, with the dtypes and shapes it
declares, and nothing else; accessors refuse a field it does not declare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vlprobe.cache.fields import ACTIVATION, FIELDS, ROW_SYMBOL, STRING
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.records import ExampleRecord, LabelVocab
from vlprobe.cache.schema import GROUPS, PARTS
from vlprobe.cache.writer import CacheWriter

SIZES = {"E": 2, "L": 3, "T": 10, "d": 8, "A": 2, "H": 4, "R": 0, "P": 0, "S": 0, "N": 0, "M": 0}


def _record(i: int) -> ExampleRecord:
    return ExampleRecord(
        example_id=f"e{i}",
        group_id=f"g{i}",
        split="train",
        hidden=np.ones((3, 5, 8), np.float32),
        modality=np.array([0, 0, 0, 1, 1], np.int8),
        word_index=np.array([-1, 0, -1, -1, -1], np.int32),
        cls_mass=np.full((2, 4, 2), 0.5, np.float32),
    )


def test_every_field_is_written_as_declared(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    with CacheWriter(path, {"num_layers": 2, "num_heads": 4}, LabelVocab([], [], [])) as w:
        for i in range(SIZES["E"]):
            w.add(_record(i))
    reader = CacheReader(path)
    written = set()
    reader.file.visititems(lambda n, o: written.add(n) if hasattr(o, "dtype") else None)
    assert written == {f.path for f in FIELDS}  # every declared dataset, nothing else
    for f in FIELDS:
        ds = reader.file[f.path]
        if f.kind == "offset":
            assert ds.shape == (SIZES[f.shape[0][0]] + 1,), f.path
            continue
        assert ds.shape == tuple(s if isinstance(s, int) else SIZES[s] for s in f.shape), f.path
        want = {STRING: "O", ACTIVATION: "float16"}.get(f.dtype, f.dtype)
        assert (ds.dtype.kind if f.dtype == STRING else ds.dtype.name) == want, f.path
        assert ds.fletcher32 == (f.checksum == "chunk"), f.path
    assert list(reader.example("token_offset")) == [0, 5, 10]
    assert list(reader.example("n_image")) == [2, 2]


def test_declaration_and_schema_agree() -> None:
    assert set(GROUPS) == set(ROW_SYMBOL) and set(PARTS) - {"maps"} <= set(GROUPS)
    for f in FIELDS:
        assert f.index_into in (None, "examples", "region", "phrase"), f.path
        if not f.optional:  # what every record must have is core
            assert f.part in ("examples", "tokens", "token_states"), f.path


def test_a_record_refuses_what_is_not_declared_and_defaults_what_is() -> None:
    with pytest.raises(TypeError, match="no field.*region_area"):
        ExampleRecord(region_area=np.zeros(1), **_record(0).__dict__)
    rec = _record(0)
    assert rec.coref_attention.shape == (0, 2, 4, 2) and rec.text == ""


def test_accessors_refuse_an_undeclared_field(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    with CacheWriter(path, {"num_layers": 2, "num_heads": 4}, LabelVocab([], [], [])) as w:
        w.add(_record(0))
    with pytest.raises(KeyError, match="units/region/ holds: embedding, example, category, box"):
        CacheReader(path).unit("region", "area")
