"""Write the activation cache: append per-example records, publish atomically at the end.

The file is written to this writer's own ``<path>.<pid>-<random>.partial`` and, after the
``complete`` flag is set and the bytes are on disk (fsync), renamed onto ``path`` in one step:
a killed extraction never leaves a file at the final path that looks finished, and two writers
never share a partial file. Every dataset carries a Fletcher-32 checksum per chunk, so a cache
corrupted on disk fails to read instead of returning wrong numbers. A multi-stream model
(LXMERT) writes one group per stream, each laid out like a one-sequence file.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from vlprobe import __version__
from vlprobe.cache.checksums import seal_file
from vlprobe.cache.fields import (
    ACTIVATION,
    COUNTED_TABLES,
    FIELDS,
    MAPS,
    ROW_SYMBOL,
    STRING,
    Field,
    field,
)
from vlprobe.cache.records import ExampleRecord, LabelVocab
from vlprobe.cache.schema import (
    CORE_GROUPS,
    PARTS,
    SCHEMA_VERSION,
    expand_parts,
    part_of,
    partial_path,
    rows_per_chunk,
    stream_group,
)

_STR = h5py.string_dtype()
METADATA_BYTES = 1 << 20  # room kept for HDF5's own structures on each flush


def cast_activations(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``data`` as ``dtype``, on arrival: queued batches then hold half the bytes.

    float32 -> float16 goes through torch (F16C instructions): numpy converted ~5x slower,
    the largest part of the writer's time next to the model (bench/extraction_overhead.py).
    """
    data = np.asarray(data)
    if data.dtype == dtype:
        return data
    if dtype == np.float16 and data.dtype == np.float32:
        import torch

        return torch.from_numpy(np.ascontiguousarray(data)).to(torch.float16).numpy()
    return data.astype(dtype)


def record_sizes(rec: ExampleRecord, name: str) -> dict[str, int]:
    """Every shape symbol's size in ``rec`` (rows of each part, layers, heads ...), checked:
    a field whose shape disagrees with its declaration is refused, naming cache and example."""
    sizes = rec.sizes()
    for f in FIELDS:
        if f.source is None or f.kind == "offset" or f.dtype == STRING:
            continue
        rule, shape = f.record_shape(), np.shape(getattr(rec, f.source))
        ok = len(rule) == len(shape)
        for symbol, size in zip(rule, shape, strict=False):
            want = symbol if isinstance(symbol, int) else sizes.setdefault(symbol, size)
            ok = ok and want == size
        if not ok:
            raise ValueError(
                f"{name}: example {rec.example_id}: {f.source} has shape {shape}, but "
                f"{f.path} is ({', '.join(map(str, f.shape))}) with {sizes}"
            )
    return sizes


def _check_finite(data: np.ndarray, f: Field, rec: ExampleRecord, name: str) -> None:
    """Refuse NaN or infinity (a model fed bad input, or a value beyond float16's range
    cast to infinity): one NaN row trains a probe at chance without a word."""
    if f.nan_without_text and rec.n_text == 0:
        data = np.nan_to_num(data, nan=0.0, posinf=np.inf, neginf=-np.inf)
    if np.isfinite(data).all():
        return
    kinds = [k for k, bad in (("NaN", np.isnan(data)), ("infinite", np.isinf(data))) if bad.any()]
    raise ValueError(
        f"{name}: {f.path} of example {rec.example_id} holds {' and '.join(kinds)} values "
        f"(stored as {data.dtype}; float16 holds at most 65504): check that example's inputs "
        "(its region features) and model, or store float32 with extraction.dtype=float32"
    )


def _set_attrs(target: h5py.Group, attrs: Mapping[str, object]) -> None:
    """Numbers and strings as they are, anything else as JSON (the reader decodes it)."""
    for key, value in attrs.items():
        target.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)


def fsync_path(path: Path) -> None:
    """Force a file's bytes (or a folder's entries) to disk: publication survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskFullError(OSError):
    """The disk filled while writing a cache: one line naming the file and the way out."""


def _is_disk_full(err: Exception) -> bool:
    """ENOSPC, as the OS reports it or as HDF5 words it inside its own error message (h5py
    raises that as OSError or, from an id's release, RuntimeError)."""
    text = str(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return "No space left on device" in text or "errno = 28" in text


@contextmanager
def no_space_guard(path: Path) -> Iterator[None]:
    """Turn a full disk, however HDF5 reports it, into :class:`DiskFullError` (the caller
    removes its partial file)."""
    try:
        yield
    except DiskFullError:
        raise
    except (OSError, RuntimeError) as err:
        if not _is_disk_full(err):
            raise
        raise DiskFullError(
            f"no space left on device writing {path}: free space or set paths.cache_dir=... "
            "(a folder on a disk with room)"
        ) from None


def discard(file: h5py.File | None, partial: Path, disk_full: bool) -> None:
    """Close and delete an unfinished file. On a full disk its own bytes are freed first
    (truncated), so HDF5 can write out what it still buffers and close cleanly: closing a
    file whose writes fail leaves HDF5 broken (tracebacks, then a segfault at exit)."""
    if disk_full:
        with suppress(OSError):
            os.truncate(partial, 0)
    with suppress(Exception):  # the file is deleted next; the first error is the one raised
        if file:
            file.close()
    partial.unlink(missing_ok=True)


def publish(partial: Path, path: Path) -> None:
    """Make a finished file whole on disk, then rename it onto ``path`` in one step."""
    fsync_path(partial)
    os.replace(partial, path)
    fsync_path(path.parent)  # the rename itself survives a crash


def _itemsize(dtype: object, data: np.ndarray) -> int:
    """Bytes per value as stored (a variable-length string: its 16-byte reference)."""
    if dtype is _STR:
        return 16
    return np.dtype(data.dtype if dtype is None else dtype).itemsize  # type: ignore[arg-type]


def _chunk_shape(shape: tuple[int, ...], axis: int, dtype: object) -> tuple[int, ...]:
    """Chunks of whole rows along ``axis``, about ``TARGET_CHUNK_BYTES`` each."""
    row_bytes = int(np.prod([s for i, s in enumerate(shape) if i > axis] or [1]))
    row_bytes *= 16 if dtype is _STR else np.dtype(dtype).itemsize  # type: ignore[arg-type]
    return (*[1] * axis, rows_per_chunk(row_bytes), *shape[axis + 1 :])


class _Tables:
    """The growing datasets of one token sequence: the file itself, or one stream's group."""

    def __init__(
        self, group: h5py.Group, parts: frozenset[str], dtype: np.dtype, name: str
    ) -> None:
        """``name``: the cache (and stream) in messages."""
        self.group, self.parts, self.dtype, self.name = group, parts, dtype, name
        self.counts = dict.fromkeys(COUNTED_TABLES, 0)
        self.offset_counts: dict[str, list[np.ndarray]] = {
            f.path: [] for f in FIELDS if f.kind == "offset"
        }
        self.dropped_phrases = 0
        self._pending: dict[str, tuple[int, object, list[np.ndarray]]] = {}
        # open handles, kept: closing a dataset flushes its chunks from a destructor, where a
        # failed write (a full disk) can only be printed, not raised to the caller
        self._datasets: dict[str, h5py.Dataset] = {}

    # -- low level ------------------------------------------------------------------------
    def _append(self, name: str, data: np.ndarray, axis: int = 0, dtype=None) -> None:
        """Queue ``data`` for dataset ``name``; written in one resize per flush, not per example.
        Datasets of parts this cache does not hold are dropped here."""
        if part_of(name) not in self.parts and part_of(name) not in CORE_GROUPS:
            return
        self._pending.setdefault(name, (axis, dtype, []))[2].append(np.asarray(data))

    def bytes_to_write(self) -> int:
        """At most what the next flush adds to the file: the queued bytes, and a new chunk
        for each chunk column it may start (chunks are allocated whole)."""
        total = 0
        for axis, dtype, arrays in self._pending.values():
            if not any(a.shape[axis] for a in arrays):
                continue  # nothing to write: no chunk either
            shape = arrays[0].shape
            chunk, itemsize = _chunk_shape(shape, axis, dtype), _itemsize(dtype, arrays[0])
            columns = int(np.prod(shape[:axis], dtype=np.int64))
            total += sum(a.nbytes for a in arrays) + columns * int(np.prod(chunk)) * itemsize
        return total

    def flush(self) -> None:
        """Write everything queued since the last flush (called once per extraction batch)."""
        for name, (axis, dtype, parts) in self._pending.items():
            self._write(name, np.concatenate(parts, axis=axis), axis, dtype)
        self._pending.clear()

    def _write(self, name: str, data: np.ndarray, axis: int, dtype) -> None:
        """Grow dataset ``name`` along ``axis`` by ``data``; created on first use."""
        dtype = data.dtype if dtype is None else dtype
        if name not in self.group:
            shape = list(data.shape)
            shape[axis] = 0
            maxshape = list(data.shape)
            maxshape[axis] = None
            self.group.create_dataset(
                name,
                shape=tuple(shape),
                maxshape=tuple(maxshape),
                dtype=dtype,
                chunks=_chunk_shape(data.shape, axis, dtype),
                fletcher32=dtype is not _STR,  # HDF5 checksums fixed-size data only
            )
        if name not in self._datasets:
            self._datasets[name] = self.group[name]
        ds = self._datasets[name]
        start = ds.shape[axis]
        if data.shape[axis] == 0:
            return
        new_shape = list(ds.shape)
        new_shape[axis] = start + data.shape[axis]
        ds.resize(tuple(new_shape))
        index = [slice(None)] * data.ndim
        index[axis] = slice(start, start + data.shape[axis])
        ds[tuple(index)] = data.astype(dtype, copy=False) if dtype is not _STR else data

    def _dtype(self, f: Field) -> np.dtype:
        """How field ``f`` is stored: activations as the cache's dtype, strings as UTF-8."""
        if f.dtype == ACTIVATION:
            return self.dtype
        return _STR if f.dtype == STRING else np.dtype(f.dtype)

    # -- records ------------------------------------------------------------------------
    def add(self, rec: ExampleRecord) -> None:
        """Append every declared field of one example (vlprobe.cache.fields.FIELDS)."""
        sizes = record_sizes(rec, self.name)
        for f in FIELDS:
            if f.kind == "offset":
                self.offset_counts[f.path].append(np.atleast_1d(getattr(rec, f.source)))
                continue
            if f.kind == "owner":
                data = np.zeros(sizes[ROW_SYMBOL[f.part]], np.dtype(f.dtype))
            elif f.dtype == STRING:
                data = np.array([getattr(rec, f.source)], dtype=object)
            else:
                data = np.asarray(getattr(rec, f.source))
                data = data[None] if f.kind == "example" else data
            if f.index_into:
                data = data + self.counts[f.index_into]
            if f.dtype == ACTIVATION:
                data = cast_activations(data, self.dtype)
            if f.floating:
                _check_finite(data, f, rec, self.name)
            self._append(f.path, data, axis=f.axis, dtype=self._dtype(f))
        e = self.counts["examples"]
        if rec.attention_map is not None and "maps" in self.parts:
            self.group.create_dataset(
                f"{MAPS}/{e}",
                data=cast_activations(rec.attention_map, self.dtype),
                compression="gzip",
                fletcher32=True,
            )
        for table in COUNTED_TABLES:
            self.counts[table] += 1 if table == "examples" else sizes[ROW_SYMBOL[table]]
        self.dropped_phrases += rec.dropped_phrases

    def finish(self) -> None:
        """The running totals (known only at the end), then everything still queued."""
        for path, counts in self.offset_counts.items():
            totals = np.cumsum(np.concatenate([[0], *counts])).astype(np.int64)
            self._append(path, totals, dtype=np.dtype(field(path).dtype))
        self.flush()
        self.group.attrs["dropped_phrases"] = self.dropped_phrases


class CacheWriter:
    """Appends :class:`ExampleRecord` s to growing, chunked HDF5 datasets.

    ``streams`` (a multi-stream model, LXMERT): stream name -> its own attributes (layer
    names, ...). Each stream is a group ``streams/<name>`` laid out like a one-sequence cache,
    with the file's attributes overridden by its own; every example is added to every stream.
    """

    file: h5py.File | None

    def __init__(
        self,
        path: str | Path,
        attrs: dict[str, object],
        labels: LabelVocab,
        dtype: str = "float16",
        parts: Iterable[str] | None = None,
        streams: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        """``parts``: the optional parts to write besides the core (None: every part)."""
        self.path = Path(path)
        self.parts = expand_parts(PARTS if parts is None else parts)
        self.partial = partial_path(self.path)
        self.file = None
        self.dtype = np.dtype(dtype)
        self.disk_full = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._guard():
                self._create(attrs, labels, streams or {})
        except BaseException:
            self.abort()
            raise

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """:func:`no_space_guard`, remembering a full disk for :meth:`abort`."""
        try:
            with no_space_guard(self.path):
                yield
        except DiskFullError:
            self.disk_full = True
            raise

    def _create(
        self,
        attrs: Mapping[str, object],
        labels: LabelVocab,
        streams: Mapping[str, Mapping[str, object]],
    ) -> None:
        self.file = h5py.File(self.partial, "w")
        common = {
            **attrs,
            "schema_version": SCHEMA_VERSION,
            "vlprobe_version": __version__,
            "label_names": labels.as_dict(),
            "dtype": self.dtype.name,
            "parts": sorted(self.parts),
        }
        _set_attrs(self.file, {**common, "complete": 0})
        if not streams:
            self.tables = {None: _Tables(self.file, self.parts, self.dtype, str(self.path))}
            return
        self.file.attrs["streams"] = json.dumps(list(streams))
        self.tables = {}
        for name, own in streams.items():
            group = self.file.create_group(stream_group(name))
            _set_attrs(group, {**common, **own, "stream": name})
            where = f"{self.path} (stream {name})"
            self.tables[name] = _Tables(group, self.parts, self.dtype, where)

    @property
    def counts(self) -> dict:
        """Rows written per table (per stream: stream -> rows per table)."""
        if None in self.tables:
            return self.tables[None].counts
        return {name: tables.counts for name, tables in self.tables.items()}

    def add(self, rec: ExampleRecord, stream: str | None = None) -> None:
        """Append one example's record (to ``stream``'s group in a multi-stream cache)."""
        if stream not in self.tables:
            raise KeyError(f"stream {stream!r}: this cache holds {list(self.tables)}")
        with self._guard():
            self.tables[stream].add(rec)

    def flush(self) -> None:
        """Write what is queued, through HDF5's buffers onto the file: a full disk shows here,
        with at most one batch still buffered (what :meth:`abort` must get out to close)."""
        with self._guard():
            self._check_room()
            for tables in self.tables.values():
                tables.flush()
            assert self.file is not None
            self.file.flush()

    def _check_room(self) -> None:
        """Stop before a write the disk has no room for: HDF5 survives a failed write badly
        (its file cannot be closed cleanly afterwards; a segfault at exit)."""
        needed = sum(t.bytes_to_write() for t in self.tables.values()) + METADATA_BYTES
        if shutil.disk_usage(self.partial.parent).free < needed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.partial))

    def close(self) -> Path:
        """Finish the file and move it to its final path."""
        assert self.file is not None
        rows = {tables.counts["examples"] for tables in self.tables.values()}
        if len(rows) > 1:
            raise RuntimeError(f"streams of {self.path} hold different example counts {rows}")
        try:
            with self._guard():
                self._seal_and_publish()
        except BaseException:
            self.abort()  # nothing half-written stays behind (a full disk, an interrupt)
            raise
        return self.path

    def _seal_and_publish(self) -> None:
        assert self.file is not None
        for tables in self.tables.values():
            tables.finish()
        self.file.attrs["dropped_phrases"] = max(t.dropped_phrases for t in self.tables.values())
        self.file.attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        seal_file(self.file, [name for name in self.tables if name is not None])
        self.file.attrs["complete"] = 1
        self.file.close()
        self.file = None
        publish(self.partial, self.path)

    def abort(self) -> None:
        """Drop the partial file: a failed extraction leaves nothing that looks like a cache
        (closing may fail too, on a full disk: the file goes all the same)."""
        file, self.file = self.file, None
        discard(file, self.partial, self.disk_full)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
