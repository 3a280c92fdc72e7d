import base64
from pathlib import Path

import numpy as np
import pytest

from vlprobe.data.errors import DataFormatError, ProblemLog
from vlprobe.data.region_features import (
    LxmertDetections,
    iter_lxmert_tsv,
    load_region_features,
    read_butd_tsv,
    read_lxmert_tsv,
    read_region_h5,
    write_butd_tsv,
    write_lxmert_tsv,
    write_region_h5,
)
from vlprobe.data.types import RegionFeatures


def _records() -> list[RegionFeatures]:
    rng = np.random.default_rng(0)
    out = []
    for image_id, n in (("1000092795", 3), ("17", 36), ("empty", 0)):
        xy = rng.uniform(0, 100, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(1, 50, (n, 2)).astype(np.float32)], axis=1)
        feats = rng.normal(size=(n, 8)).astype(np.float32) if n else np.zeros((0, 0), np.float32)
        out.append(RegionFeatures(image_id, 333, 500, boxes, feats))
    return out


def _same(a: list[RegionFeatures], b: list[RegionFeatures]) -> None:
    assert [r.image_id for r in a] == [r.image_id for r in b]
    for x, y in zip(a, b, strict=True):
        assert (x.width, x.height) == (y.width, y.height)
        assert x.boxes.dtype == np.float32 and x.features.dtype == np.float32
        np.testing.assert_array_equal(x.boxes, y.boxes)
        np.testing.assert_array_equal(x.features, y.features)


def test_butd_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "feats.tsv"
    write_butd_tsv(path, _records())
    first = path.read_text().splitlines()[0].split("\t")
    assert first[:4] == ["1000092795", "333", "500", "3"]  # no header, width before height
    _same(list(read_butd_tsv(path)), _records())
    _same(list(load_region_features(path).values()), _records())


def test_lxmert_round_trip_with_detections(tmp_path: Path) -> None:
    path = tmp_path / "feats.tsv"
    dets = {
        "17": LxmertDetections(
            np.arange(36, dtype=np.int64),
            np.linspace(0, 1, 36, dtype=np.float32),
            np.arange(36, dtype=np.int64) * 2,
            np.full(36, 0.5, np.float32),
        )
    }
    write_lxmert_tsv(path, _records(), dets)
    first = path.read_text().splitlines()[0].split("\t")
    assert len(first) == 10 and first[1:3] == ["500", "333"]  # height before width
    _same(list(read_lxmert_tsv(path)), _records())
    _same(list(load_region_features(path).values()), _records())
    got = {r.image_id: d for r, d in iter_lxmert_tsv(path)}
    np.testing.assert_array_equal(got["17"].attrs_id, dets["17"].attrs_id)
    assert got["17"].objects_id.dtype == np.int64
    np.testing.assert_array_equal(got["1000092795"].objects_conf, np.ones(3, np.float32))


@pytest.mark.parametrize("suffix", [".h5", ".hdf5"])
def test_h5_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"feats{suffix}"
    write_region_h5(path, _records())
    by_id = {r.image_id: r for r in read_region_h5(path)}
    _same([by_id[r.image_id] for r in _records()], _records())
    assert set(load_region_features(path)) == {"1000092795", "17", "empty"}


def test_h5_bad_group(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "f.h5"
    write_region_h5(path, _records()[:1])
    with h5py.File(path, "a") as f:
        f.create_group("broken").create_dataset("boxes", data=np.zeros((2, 3), np.float32))
    with pytest.raises(DataFormatError, match=r"f\.h5, /broken: expected a group with"):
        load_region_features(path)
    log = ProblemLog()
    assert list(load_region_features(path, strict=False, problems=log)) == ["1000092795"]
    assert len(log) == 1


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(a.tobytes()).decode()


def test_shape_mismatch_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "feats.tsv"
    write_butd_tsv(path, _records()[:2])
    boxes, feats = np.zeros((2, 4), np.float32), np.zeros((2, 8), np.float32)
    with open(path, "a") as f:
        f.write(f"bad\t10\t10\t3\t{_b64(boxes)}\t{_b64(feats)}\n")  # num_boxes 3, 2 boxes
        f.write(f"bad2\t10\t10\t2\t{_b64(boxes)}\t{_b64(feats[:, :3].copy())[:-4]}\n")
        f.write(f"bad3\t10\t10\t2\t{_b64(boxes)}\tnot*base64\n")
        f.write(f"ok\t10\t10\t2\tb'{_b64(boxes)}'\t{_b64(feats)}\n")  # py3 str(bytes) wrapper
    with pytest.raises(DataFormatError) as info:
        load_region_features(path)
    assert str(info.value).startswith(
        f"{path}, line 3: num_boxes is 3 but 'boxes' decodes to 8 values (expected 3 x 4 = 12)"
    )
    log = ProblemLog()
    got = load_region_features(path, strict=False, problems=log)
    assert list(got) == ["1000092795", "17", "ok"]
    assert [p.location for p in log.problems] == ["line 3", "line 4", "line 5"]
    assert "not valid base64" in log.problems[2].message


def test_column_count_and_suffix(tmp_path: Path) -> None:
    path = tmp_path / "feats.tsv"
    path.write_text("a\tb\tc\n")
    with pytest.raises(DataFormatError, match="line 1: 3 columns: neither a BUTD"):
        load_region_features(path)
    with pytest.raises(DataFormatError, match="unknown suffix '.npz'"):
        load_region_features(tmp_path / "feats.npz")


def test_ragged_rows_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "feats.tsv"
    recs = _records()[:1]
    write_butd_tsv(path, recs + recs)
    with open(path, "a") as f:
        f.write("x\t1\t2\n")
    log = ProblemLog()
    assert list(load_region_features(path, strict=False, problems=log)) == ["1000092795"]
    assert [str(p) for p in log.problems] == [
        f"{path}, line 2: image 1000092795 appears again (first at line 1)",
        f"{path}, line 3: expected 6 tab-separated columns, got 3",
    ]


def test_writer_rejects_unwritable_ids(tmp_path: Path) -> None:
    rec = _records()[0]
    rec.image_id = "a/b"
    with pytest.raises(ValueError, match="cannot be written"):
        write_region_h5(tmp_path / "x.h5", [rec])
