"""Detector region features: bottom-up-attention (BUTD) TSV, LXMERT TSV and a per-image HDF5.

TSV files have no header line; arrays are base64 of little-endian raw buffers.

* BUTD: ``image_id, image_w, image_h, num_boxes, boxes, features`` (boxes (N, 4) and
  features (N, D) float32).
* LXMERT: ``img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf, num_boxes,
  boxes, features`` (note height before width; ids int64, the rest float32).

HDF5 layout (this project's own): one group per image, named by the image id, holding the
datasets ``boxes`` (N, 4) float32 and ``features`` (N, D) float32 and the attributes
``width``, ``height`` (int) and ``image_id`` (str); the root carries ``layout =
"vlprobe.regions/1"``. Image ids must not contain ``/``.

Errors name the file and the 1-based line (TSV) or the HDF5 path.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from vlprobe.data.errors import DataFormatError, ProblemLog, skip_or_raise
from vlprobe.data.types import RegionFeatures

PathLike = str | os.PathLike[str]

BUTD_COLUMNS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
LXMERT_COLUMNS = (
    "img_id",
    "img_h",
    "img_w",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
    "num_boxes",
    "boxes",
    "features",
)
H5_LAYOUT = "vlprobe.regions/1"


@dataclass
class LxmertDetections:
    """The per-box detector labels an LXMERT TSV carries besides boxes and features."""

    objects_id: np.ndarray  # (N,) int64
    objects_conf: np.ndarray  # (N,) float32
    attrs_id: np.ndarray  # (N,) int64
    attrs_conf: np.ndarray  # (N,) float32


def _encode(array: np.ndarray, dtype: type) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _decode(text: str, dtype: type, path: Path, where: str, column: str) -> np.ndarray:
    # files written by py3 code that str()-ed bytes carry a b'...' wrapper
    if text.startswith(("b'", 'b"')) and text.endswith(("'", '"')):
        text = text[2:-1]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DataFormatError(
            path, where, f"column '{column}' is not valid base64", "Re-extract the features"
        ) from None
    itemsize = np.dtype(dtype).itemsize
    if len(raw) % itemsize:
        raise DataFormatError(
            path,
            where,
            f"column '{column}' holds {len(raw)} bytes, not a whole number of "
            f"{np.dtype(dtype).name} values",
            "Re-extract the features",
        )
    return np.frombuffer(raw, dtype=dtype).copy()


def _int_field(text: str, path: Path, where: str, column: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        raise DataFormatError(
            path,
            where,
            f"column '{column}' should be a number, got '{text[:40]}'",
            "Check the column order",
        ) from None


def _shaped(
    array: np.ndarray, n: int, width: int | None, path: Path, where: str, column: str
) -> np.ndarray:
    """Reshape a flat array to (n,) or (n, width); width=0 infers it from the length."""
    if width is None:
        if array.size != n:
            raise DataFormatError(
                path,
                where,
                f"num_boxes is {n} but '{column}' decodes to {array.size} values",
                "num_boxes must match every array",
            )
        return array
    if width == 0:  # infer the feature dimension
        if n == 0:
            if array.size:
                raise DataFormatError(
                    path,
                    where,
                    f"num_boxes is 0 but '{column}' has {array.size} values",
                    "num_boxes must match every array",
                )
            return array.reshape(0, 0)
        if array.size % n:
            raise DataFormatError(
                path,
                where,
                f"'{column}' has {array.size} values, not a multiple of num_boxes = {n}",
                "num_boxes must match every array",
            )
        return array.reshape(n, array.size // n)
    if array.size != n * width:
        raise DataFormatError(
            path,
            where,
            f"num_boxes is {n} but '{column}' decodes to {array.size} values "
            f"(expected {n} x {width} = {n * width})",
            "num_boxes must match every array",
        )
    return array.reshape(n, width)


def _finite(array: np.ndarray, path: Path, where: str, column: str, image_id: str) -> None:
    """Refuse NaN or infinity: one such region gives a cache of NaN and a probe at chance."""
    bad = ~np.isfinite(array)
    if bad.any():
        region = int(np.argwhere(bad)[0][0])
        raise DataFormatError(
            path,
            where,
            f"image {image_id}: '{column}' of region {region} holds "
            f"{'NaN' if np.isnan(array[region]).any() else 'infinite'} values",
            "Re-extract that image's features (or data.strict=false skips its line)",
        )


def _rows(
    path: Path, ncols: int, strict: bool, problems: ProblemLog | None
) -> Iterator[tuple[int, list[str]]]:
    with open(path, encoding="ascii") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != ncols:
                error = DataFormatError(
                    path,
                    f"line {n}",
                    f"expected {ncols} tab-separated columns, got {len(fields)}",
                    "Check that the file is a complete, header-less feature TSV",
                )
                skip_or_raise(error, strict, problems)
                continue
            yield n, fields


def read_butd_tsv(
    path: PathLike, strict: bool = True, problems: ProblemLog | None = None
) -> Iterator[RegionFeatures]:
    """Records of a BUTD TSV, lazily, in file order."""
    for _, record in _butd_located(Path(path), strict, problems):
        yield record


def _butd_located(
    path: Path, strict: bool, problems: ProblemLog | None
) -> Iterator[tuple[str, RegionFeatures]]:
    for n, f in _rows(path, len(BUTD_COLUMNS), strict, problems):
        where = f"line {n}"
        try:
            w = _int_field(f[1], path, where, "image_w")
            h = _int_field(f[2], path, where, "image_h")
            num = _int_field(f[3], path, where, "num_boxes")
            boxes = _shaped(
                _decode(f[4], np.float32, path, where, "boxes"), num, 4, path, where, "boxes"
            )
            feats = _decode(f[5], np.float32, path, where, "features")
            feats = _shaped(feats, num, 0, path, where, "features")
            _finite(boxes, path, where, "boxes", f[0])
            _finite(feats, path, where, "features", f[0])
        except DataFormatError as e:
            skip_or_raise(e, strict, problems)
            continue
        yield where, RegionFeatures(f[0], w, h, boxes, feats)


def iter_lxmert_tsv(
    path: PathLike, strict: bool = True, problems: ProblemLog | None = None
) -> Iterator[tuple[RegionFeatures, LxmertDetections]]:
    """Records of an LXMERT TSV with their detector labels, lazily, in file order."""
    for _, record, detections in _lxmert_located(Path(path), strict, problems):
        yield record, detections


def _lxmert_located(
    path: Path, strict: bool, problems: ProblemLog | None
) -> Iterator[tuple[str, RegionFeatures, LxmertDetections]]:
    for n, f in _rows(path, len(LXMERT_COLUMNS), strict, problems):
        where = f"line {n}"
        try:
            h = _int_field(f[1], path, where, "img_h")
            w = _int_field(f[2], path, where, "img_w")
            num = _int_field(f[7], path, where, "num_boxes")
            cols = {}
            for col, dtype in (
                ("objects_id", np.int64),
                ("objects_conf", np.float32),
                ("attrs_id", np.int64),
                ("attrs_conf", np.float32),
            ):
                i = LXMERT_COLUMNS.index(col)
                cols[col] = _shaped(
                    _decode(f[i], dtype, path, where, col), num, None, path, where, col
                )
            boxes = _shaped(
                _decode(f[8], np.float32, path, where, "boxes"), num, 4, path, where, "boxes"
            )
            feats = _decode(f[9], np.float32, path, where, "features")
            feats = _shaped(feats, num, 0, path, where, "features")
            _finite(boxes, path, where, "boxes", f[0])
            _finite(feats, path, where, "features", f[0])
        except DataFormatError as e:
            skip_or_raise(e, strict, problems)
            continue
        yield where, RegionFeatures(f[0], w, h, boxes, feats), LxmertDetections(**cols)


def read_lxmert_tsv(
    path: PathLike, strict: bool = True, problems: ProblemLog | None = None
) -> Iterator[RegionFeatures]:
    """Records of an LXMERT TSV (detector labels dropped; see :func:`iter_lxmert_tsv`)."""
    for record, _ in iter_lxmert_tsv(path, strict, problems):
        yield record


def _check_id(image_id: str) -> None:
    if not image_id or any(c in image_id for c in "\t\r\n/"):
        raise ValueError(
            f"image id {image_id!r} cannot be written (empty, or has a tab, newline or /)"
        )


def write_butd_tsv(path: PathLike, records: Iterable[RegionFeatures]) -> None:
    """Write a header-less BUTD TSV that :func:`read_butd_tsv` reads back exactly."""
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for r in records:
            _check_id(r.image_id)
            f.write(
                f"{r.image_id}\t{r.width}\t{r.height}\t{r.boxes.shape[0]}\t"
                f"{_encode(r.boxes, np.float32)}\t{_encode(r.features, np.float32)}\n"
            )


def write_lxmert_tsv(
    path: PathLike,
    records: Iterable[RegionFeatures],
    detections: Mapping[str, LxmertDetections] | None = None,
) -> None:
    """Write a header-less LXMERT TSV; missing detector labels are written as id 0, conf 1."""
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for r in records:
            _check_id(r.image_id)
            n = r.boxes.shape[0]
            det = (detections or {}).get(r.image_id) or LxmertDetections(
                np.zeros(n, np.int64),
                np.ones(n, np.float32),
                np.zeros(n, np.int64),
                np.ones(n, np.float32),
            )
            f.write(
                "\t".join(
                    [
                        r.image_id,
                        str(r.height),
                        str(r.width),
                        _encode(det.objects_id, np.int64),
                        _encode(det.objects_conf, np.float32),
                        _encode(det.attrs_id, np.int64),
                        _encode(det.attrs_conf, np.float32),
                        str(n),
                        _encode(r.boxes, np.float32),
                        _encode(r.features, np.float32),
                    ]
                )
                + "\n"
            )


def write_region_h5(path: PathLike, records: Iterable[RegionFeatures]) -> None:
    """Write the per-image HDF5 layout described in the module docstring."""
    with h5py.File(path, "w") as f:
        f.attrs["layout"] = H5_LAYOUT
        for r in records:
            _check_id(r.image_id)
            g = f.create_group(r.image_id)
            g.create_dataset("boxes", data=np.asarray(r.boxes, dtype=np.float32))
            g.create_dataset("features", data=np.asarray(r.features, dtype=np.float32))
            g.attrs["width"] = int(r.width)
            g.attrs["height"] = int(r.height)
            g.attrs["image_id"] = r.image_id


def read_region_h5(
    path: PathLike, strict: bool = True, problems: ProblemLog | None = None
) -> Iterator[RegionFeatures]:
    """Records of a per-image HDF5 file, in the file's (sorted) group order."""
    for _, record in _h5_located(Path(path), strict, problems):
        yield record


def _h5_located(
    path: Path, strict: bool, problems: ProblemLog | None
) -> Iterator[tuple[str, RegionFeatures]]:
    with h5py.File(path, "r") as f:
        for name, g in f.items():
            try:
                if not isinstance(g, h5py.Group) or "boxes" not in g or "features" not in g:
                    raise DataFormatError(
                        path,
                        f"/{name}",
                        "expected a group with 'boxes' and 'features' datasets",
                        "Write the file with write_region_h5",
                    )
                boxes = np.asarray(g["boxes"][()], dtype=np.float32)
                feats = np.asarray(g["features"][()], dtype=np.float32)
                if boxes.ndim != 2 or boxes.shape[1] != 4:
                    raise DataFormatError(
                        path,
                        f"/{name}/boxes",
                        f"expected shape (N, 4), got {boxes.shape}",
                        "Boxes are x1 y1 x2 y2 pixels",
                    )
                if feats.ndim != 2 or feats.shape[0] != boxes.shape[0]:
                    raise DataFormatError(
                        path,
                        f"/{name}/features",
                        f"expected shape ({boxes.shape[0]}, D), got {feats.shape}",
                        "One feature row per box",
                    )
                w, h = int(g.attrs.get("width", 0)), int(g.attrs.get("height", 0))
                image_id = str(g.attrs.get("image_id", name))
                _finite(boxes, path, f"/{name}/boxes", "boxes", image_id)
                _finite(feats, path, f"/{name}/features", "features", image_id)
            except DataFormatError as e:
                skip_or_raise(e, strict, problems)
                continue
            yield f"/{name}", RegionFeatures(image_id, w, h, boxes, feats)


def load_region_features(
    path: PathLike, strict: bool = True, problems: ProblemLog | None = None
) -> dict[str, RegionFeatures]:
    """All records of a feature file by image id, the reader chosen by suffix.

    ``.tsv``: BUTD (6 columns) or LXMERT (10 columns), told apart by the first line;
    ``.h5`` / ``.hdf5``: :func:`read_region_h5`. A repeated image id is an error.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        with open(path, encoding="ascii") as f:
            first = next((line for line in f if line.strip()), "")
        ncols = len(first.rstrip("\r\n").split("\t")) if first else 0
        records: Iterator[tuple[str, RegionFeatures]]
        if ncols == len(BUTD_COLUMNS):
            records = _butd_located(path, strict, problems)
        elif ncols == len(LXMERT_COLUMNS):
            records = ((loc, r) for loc, r, _ in _lxmert_located(path, strict, problems))
        else:
            raise DataFormatError(
                path,
                "line 1",
                f"{ncols} columns: neither a BUTD (6) nor an LXMERT (10) TSV",
                "Give a header-less feature TSV",
            )
    elif suffix in (".h5", ".hdf5"):
        records = _h5_located(path, strict, problems)
    else:
        raise DataFormatError(path, "", f"unknown suffix '{suffix}'", "Use .tsv, .h5 or .hdf5")
    out: dict[str, RegionFeatures] = {}
    first: dict[str, str] = {}
    for where, record in records:
        if record.image_id in out:
            error = DataFormatError(
                path,
                where,
                f"image {record.image_id} appears again (first at {first[record.image_id]})",
                "Keep one record per image",
            )
            skip_or_raise(error, strict, problems)
            continue
        out[record.image_id] = record
        first[record.image_id] = where
    return out
