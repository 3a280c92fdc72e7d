"""A cache written in shards by several processes, and their merge into one cache.

Shard ``i`` holds a contiguous run of the sorted examples, written like any cache (partial
name, published when complete) into ``<cache>.shards/``. A published shard whose fingerprint
(model, data, settings, its example ids) matches is never redone. The merge concatenates
every dataset along its growing axis and shifts the values that index another table, so the
merged file equals a one-process extraction dataset by dataset; it is written under a
partial name and published with one rename.
"""

from __future__ import annotations

import json
import shutil
from bisect import bisect_right
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from vlprobe.cache.checksums import UNSEALED, seal_file
from vlprobe.cache.fields import FIELDS, MAPS
from vlprobe.cache.schema import STREAMS_GROUP, partial_path, stream_group
from vlprobe.cache.writer import DiskFullError, discard, no_space_guard, publish
from vlprobe.data.examples import VLExample
from vlprobe.hashing import text_sha256

SHARD_ATTRS = ("shard_index", "shard_count", "shard_fingerprint", "shard_counts")
# from the declaration (cache/fields.py): datasets whose values are row numbers of another
# table (the writer's counter of that table, kept per shard in ``shard_counts``): a later
# shard's values move by the rows before it
INDEX_INTO = {f.path: f.index_into for f in FIELDS if f.index_into}
# n + 1 running totals from 0: a later shard drops its leading 0 and adds the totals before it
CUMULATIVE = tuple(f.path for f in FIELDS if f.kind == "offset")
COPY_BYTES = 64 << 20  # the merge copies at most this much of one dataset at a time


@dataclass
class ShardPlan:
    """Where each shard of the cache at ``out_path`` lives and which examples it holds."""

    out_path: Path
    bounds: list[tuple[int, int]]  # [lo, hi) positions in the sorted examples
    fingerprints: list[str]

    @classmethod
    def for_cache(
        cls,
        out_path: Path,
        ordered: Sequence[VLExample],
        num_shards: int,
        fingerprint: str,
        batch_size: int = 1,
    ) -> ShardPlan:
        """``num_shards`` (at most one per batch) contiguous runs of near-equal size, cut
        between batches of ``batch_size``: every batch then holds the examples a one-process
        run batches together, padded alike, so a sharded cache has its numbers bit for bit
        (a batch cut in two pads to other lengths, and float rounding differs)."""
        batches = -(-len(ordered) // batch_size)
        num_shards = max(1, min(num_shards, batches))
        edges = np.linspace(0, batches, num_shards + 1).round().astype(int) * batch_size
        edges = np.minimum(edges, len(ordered)).tolist()
        bounds = list(zip(edges[:-1], edges[1:], strict=True))
        prints = []
        for lo, hi in bounds:
            ids = "".join(f"\0{ex.example_id}" for ex in ordered[lo:hi])
            prints.append(text_sha256(fingerprint + ids))
        return cls(Path(out_path), bounds, prints)

    @property
    def directory(self) -> Path:
        return self.out_path.with_name(self.out_path.name + ".shards")

    @property
    def single(self) -> bool:
        """One shard is the cache itself: written (and published) at ``out_path`` directly."""
        return len(self.bounds) == 1

    def path(self, shard: int) -> Path:
        if self.single:
            return self.out_path
        return self.directory / f"shard-{shard:05d}-of-{len(self.bounds):05d}.h5"

    def shard_of(self, position: int) -> int:
        return bisect_right([lo for lo, _ in self.bounds], position) - 1

    def shard_attrs(self, shard: int) -> dict[str, object]:
        if self.single:
            return {}
        return {
            "shard_index": shard,
            "shard_count": len(self.bounds),
            "shard_fingerprint": self.fingerprints[shard],
        }

    def is_done(self, shard: int) -> bool:
        """Published, complete, and written for these examples with these settings (a single
        shard is never done beforehand: an extraction asked for rebuilds the cache)."""
        path = self.path(shard)
        if self.single or not path.exists():
            return False
        try:
            with h5py.File(path, "r") as f:
                return bool(f.attrs.get("complete", 0)) and (
                    f.attrs.get("shard_fingerprint") == self.fingerprints[shard]
                )
        except OSError:  # not HDF5 (a truncated copy): redo it
            return False

    def pending(self) -> list[int]:
        return [i for i in range(len(self.bounds)) if not self.is_done(i)]


def _split_name(name: str) -> tuple[str | None, str]:
    """``(stream, path within its group)`` of a dataset (stream None: a one-sequence cache)."""
    if name.startswith(STREAMS_GROUP + "/"):
        _, stream, rest = name.split("/", 2)
        return stream, rest
    return None, name


def _counts(src: h5py.File, stream: str | None = None) -> dict[str, int]:
    """Rows of each table in a shard (of one stream's group), as its writer counted them."""
    counts = json.loads(src.attrs["shard_counts"])
    return counts if stream is None else counts[stream]


def _growth_axis(ds: h5py.Dataset) -> int | None:
    axes = [i for i, m in enumerate(ds.maxshape or ()) if m is None]
    return axes[0] if axes else None


def _along(axis: int, ndim: int, lo: int, hi: int) -> tuple[slice, ...]:
    index = [slice(None)] * ndim
    index[axis] = slice(lo, hi)
    return tuple(index)


def _dataset_names(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return [n for n in names if not _split_name(n)[1].startswith(MAPS + "/")]


def _merged_attrs(srcs: list[h5py.Group]) -> dict[str, object]:
    """Shard 0's attributes (of the file or of one stream's group); per-shard ones dropped,
    counts summed, the latest creation time."""
    skip = (*SHARD_ATTRS, *UNSEALED, "created_utc", "dropped_phrases")
    attrs = {k: v for k, v in srcs[0].attrs.items() if k not in skip}
    for src in srcs[1:]:
        other = {k: v for k, v in src.attrs.items() if k not in skip}
        if _json_safe(other) != _json_safe(attrs):
            raise ValueError(f"{src.file.filename}: shard attributes differ from shard 0's")
    attrs["dropped_phrases"] = sum(int(s.attrs.get("dropped_phrases", 0)) for s in srcs)
    if isinstance(srcs[0], h5py.File):
        attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        attrs["complete"] = 1
    return attrs


def _json_safe(attrs: dict[str, object]) -> dict[str, str]:
    """Attributes as comparable strings (arrays compare element-wise otherwise)."""
    return {k: str(v.tolist() if isinstance(v, np.ndarray) else v) for k, v in attrs.items()}


def _copy_concatenated(out: h5py.File, name: str, srcs: list[h5py.File]) -> None:
    """``name`` of every shard, concatenated along its growing axis, indices shifted."""
    first = srcs[0][name]
    axis = _growth_axis(first)
    if axis is None:  # a fixed array: the same in every shard
        for src in srcs[1:]:
            if not np.array_equal(src[name][()], first[()]):
                raise ValueError(f"{src.filename}: fixed dataset {name} differs between shards")
        out.create_dataset(
            name,
            data=first[()],
            chunks=first.chunks,
            maxshape=first.maxshape,
            fletcher32=first.fletcher32,
        )
        return
    stream, table_name = _split_name(name)
    cumulative = table_name in CUMULATIVE
    lengths = [src[name].shape[axis] - (cumulative and k > 0) for k, src in enumerate(srcs)]
    shape = list(first.shape)
    shape[axis] = sum(lengths)
    ds = out.create_dataset(
        name,
        shape=tuple(shape),
        maxshape=first.maxshape,
        dtype=first.dtype,
        chunks=first.chunks,
        compression=first.compression,
        compression_opts=first.compression_opts,
        fletcher32=first.fletcher32,
    )
    row_bytes = max(1, first.dtype.itemsize * int(np.prod(shape)) // max(1, shape[axis]))
    step = max(1, COPY_BYTES // row_bytes)
    pos, shift = 0, 0
    for k, src in enumerate(srcs):
        data = src[name]
        skip = int(cumulative and k > 0)
        for lo in range(skip, data.shape[axis], step):
            hi = min(lo + step, data.shape[axis])
            block = data[_along(axis, data.ndim, lo, hi)]
            if shift:
                block = block + np.asarray(shift, dtype=block.dtype)
            n = hi - lo
            ds[_along(axis, ds.ndim, pos, pos + n)] = block
            pos += n
        if table_name in INDEX_INTO:
            shift += _counts(src, stream)[INDEX_INTO[table_name]]
        elif cumulative and data.shape[axis]:
            shift += int(data[data.shape[axis] - 1])
    ds.flush()  # here, where a failed write raises (a destructor could only print it)


def _copy_maps(out: h5py.File, srcs: list[h5py.File], stream: str | None) -> None:
    """Per-example attention maps, renamed from shard-local to cache example rows."""
    maps = MAPS if stream is None else f"{stream_group(stream)}/{MAPS}"
    offset = 0
    for src in srcs:
        for key, ds in src[maps].items() if maps in src else []:
            out.create_dataset(
                f"{maps}/{int(key) + offset}",
                data=ds[()],
                chunks=ds.chunks,
                compression=ds.compression,
                compression_opts=ds.compression_opts,
                fletcher32=ds.fletcher32,
            )
        offset += _counts(src, stream)["examples"]


def _merge_into(out: h5py.File, srcs: list[h5py.File]) -> None:
    """Every dataset of the shards ``srcs``, concatenated, and their merged attributes."""
    attrs = _merged_attrs(srcs)
    out.attrs["complete"] = 0
    for name in _dataset_names(srcs[0]):
        _copy_concatenated(out, name, srcs)
    streams = json.loads(srcs[0].attrs.get("streams", "[]"))
    for stream in streams or [None]:
        _copy_maps(out, srcs, stream)
    for stream in streams:  # each stream's group has attributes of its own
        group = out.require_group(stream_group(stream))
        group.attrs.update(_merged_attrs([s[stream_group(stream)] for s in srcs]))
    out.attrs.update(attrs)
    seal_file(out, streams)  # the merged values and attributes, not a shard's


def merge_shards(plan: ShardPlan) -> Path:
    """Publish the cache at ``plan.out_path`` from its complete shards, then remove them."""
    out_path = plan.out_path
    if plan.single:  # the writer published the cache itself
        return out_path
    if plan.pending():
        raise RuntimeError(f"cannot merge {out_path}: shards not written: {plan.pending()}")
    paths = [plan.path(i) for i in range(len(plan.bounds))]
    partial = partial_path(out_path)
    out = None
    try:
        with no_space_guard(out_path), ExitStack() as stack:
            srcs = [stack.enter_context(h5py.File(p, "r")) for p in paths]
            out = h5py.File(partial, "w")
            _merge_into(out, srcs)
            out.close()
            publish(partial, out_path)  # like CacheWriter.close: whole on disk, then renamed
    except BaseException as err:
        discard(out, partial, isinstance(err, DiskFullError))
        raise
    shutil.rmtree(plan.directory, ignore_errors=True)
    return out_path
