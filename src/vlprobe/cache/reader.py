"""Open a finished cache read-only, check it, and expose its metadata.

Opening is lazy and per process: DataLoader workers must not inherit an h5py handle opened
before they forked, so :meth:`CacheReader.file` reopens when the process id changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from vlprobe.cache.schema import (
    PARTIAL_SUFFIX,
    PARTS,
    READ_CACHE_BYTES,
    SCHEMA_VERSION,
    SPLIT_NAMES,
    example_path,
    expand_parts,
    pair_path,
    partial_files,
    stream_group,
    token_path,
    unit_path,
)
from vlprobe.cache.verify import shard_problem, structure_problems

_REBUILD = "Delete it: a run rebuilds its cache, or rebuild it with `vlprobe extract`"


class CacheError(RuntimeError):
    """A cache file that is missing, unfinished or of another schema."""


def open_cache_file(path: str | Path) -> h5py.File:
    """Open ``path`` read-only with a read cache large enough for several full chunks.

    Refused, with the fix named: a missing, unreadable (truncated), unfinished, other-schema or
    structurally broken (a dataset missing, lengths disagreeing) file, and what an extraction
    leaves on its way to the cache: a partial file, or a shard (a part of the examples only).
    """
    path = Path(path)
    if path.name.endswith(PARTIAL_SUFFIX):
        raise CacheError(
            f"{path} is an extraction's partial file, not a cache: read the cache it is named "
            "after (a run rebuilds it, or `vlprobe extract`)"
        )
    if not path.exists():
        partial = partial_files(path)
        hint = (
            f" A partial file {partial[0]} exists: its extraction did not finish; delete it and "
            "run `vlprobe extract` again."
            if partial
            else " Build it with `vlprobe extract` (see README)."
        )
        raise CacheError(f"no cache at {path}.{hint}")
    if path.is_dir():
        raise CacheError(
            f"{path} is a folder, not a cache: give the .h5 file a run or `vlprobe extract` wrote"
        )
    if not h5py.is_hdf5(path):  # README.md given as a cache is not a corrupted cache
        raise CacheError(
            f"{path} is not an HDF5 file, so not a vlprobe cache: give the .h5 file a run or "
            "`vlprobe extract` wrote"
        )
    try:
        f = h5py.File(path, "r", rdcc_nbytes=READ_CACHE_BYTES, rdcc_nslots=10007)
    except OSError as err:
        raise CacheError(
            f"{path} cannot be read as HDF5 (truncated or corrupted: {err}). {_REBUILD}"
        ) from None
    if int(f.attrs.get("complete", 0)) != 1:
        f.close()
        raise CacheError(f"{path} is not a finished vlprobe cache (no 'complete' flag).")
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        f.close()
        raise CacheError(
            f"{path} has cache schema {version}, this vlprobe reads {SCHEMA_VERSION}: re-extract."
        )
    if "shard_index" in f.attrs:
        problem = shard_problem(f)
        f.close()
        raise CacheError(f"{path} is {problem}")
    problems = structure_problems(f)
    if problems:
        f.close()
        more = f" (and {len(problems) - 1} more; `vlprobe verify {path}` lists them)"
        raise CacheError(
            f"{path} is broken: {problems[0]}{more if len(problems) > 1 else ''}. {_REBUILD}"
        )
    return f


def cache_parts(f: h5py.File) -> frozenset[str]:
    """The optional parts ``f`` holds; caches written before parts existed hold every part."""
    stored = f.attrs.get("parts")
    return frozenset(json.loads(stored)) if stored is not None else frozenset(PARTS)


def cache_streams(f: h5py.File) -> list[str]:
    """The streams of a multi-stream cache (LXMERT), in order; empty for one sequence."""
    stored = f.attrs.get("streams")
    return list(json.loads(stored)) if stored is not None else []


class CacheReader:
    """Read-only view of a cache; small index arrays are loaded once, activations never.

    ``stream``: one stream of a multi-stream cache, read as if it were a cache of its own
    (``file`` is its group, whose attributes are the file's with the stream's own on top).
    """

    def __init__(self, path: str | Path, stream: str | None = None) -> None:
        self.path = Path(path)
        self.stream = stream
        self._file: h5py.File | None = None
        self._pid = -1
        self.file  # noqa: B018 - validate eagerly so errors surface at construction

    @property
    def file(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = open_cache_file(self.path)
            self._pid = os.getpid()
            if self.stream is not None and self.stream not in cache_streams(self._file):
                held = cache_streams(self._file)
                self.close()
                raise CacheError(
                    f"{self.path} has no stream {self.stream!r}; it holds {held or 'one sequence'}"
                )
        if self.stream is None:
            return self._file
        return self._file[stream_group(self.stream)]  # type: ignore[return-value]

    @property
    def streams(self) -> list[str]:
        """The streams this file holds (empty: one sequence, read by this reader itself)."""
        return cache_streams(self.file.file)

    def stream_reader(self, stream: str) -> CacheReader:
        """A reader of one stream of this (multi-stream) cache."""
        return CacheReader(self.path, stream)

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict:
        """Pickle without the handle: each worker opens its own."""
        return {"path": self.path, "stream": self.stream, "_file": None, "_pid": -1}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    @property
    def parts(self) -> frozenset[str]:
        return cache_parts(self.file)

    def require(self, parts: Iterable[str], reader: str) -> None:
        """Refuse, naming the fix, a cache without a part that ``reader`` (a task) reads."""
        lacking = sorted(expand_parts(parts) - self.parts)
        if lacking:
            raise CacheError(
                f"{self.path} lacks {', '.join(lacking)}, which {reader} reads: rebuild it with "
                f"vlprobe extract extraction.parts=[{','.join(lacking)}] (or let the run build "
                "its own cache: data.cache=null)"
            )

    def attr(self, key: str) -> object:
        value = self.file.attrs[key]
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value[:1] in "[{":
            return json.loads(value)
        return value

    @cached_property
    def label_names(self) -> dict[str, list[str]]:
        return json.loads(self.file.attrs["label_names"])

    @cached_property
    def layer_names(self) -> list[str]:
        return list(self.attr("layer_names"))

    @property
    def num_layers(self) -> int:
        return int(self.file.attrs["num_layers"])

    @property
    def num_heads(self) -> int:
        return int(self.file.attrs["num_heads"])

    @property
    def hidden_size(self) -> int:
        return int(self.file.attrs["hidden_size"])

    def array(self, name: str) -> np.ndarray:
        """Load a whole (small) dataset, e.g. an index or label array."""
        return self.file[name][()]

    def example(self, field: str) -> np.ndarray:
        """A whole per-example array, e.g. ``example("token_offset")``."""
        return self.array(example_path(field))

    def token(self, field: str) -> np.ndarray:
        """A whole per-token array, e.g. ``token("modality")`` (read ``hidden`` by rows)."""
        return self.array(token_path(field))

    def unit(self, kind: str, field: str) -> np.ndarray:
        """A whole per-unit array, e.g. ``unit("region", "category")`` (not activations)."""
        return self.array(unit_path(kind, field))

    def pair(self, kind: str, field: str) -> np.ndarray:
        """A whole per-pair array, e.g. ``pair("relation", "subject")``."""
        return self.array(pair_path(kind, field))

    @cached_property
    def example_split(self) -> np.ndarray:
        return self.example("split")

    def split_counts(self) -> dict[str, int]:
        counts = np.bincount(self.example_split, minlength=len(SPLIT_NAMES))
        return {name: int(c) for name, c in zip(SPLIT_NAMES, counts, strict=True)}
