"""Open a finished cache read-only, check it, and expose its metadata.

Opening is lazy and per process: DataLoader workers must not inherit an h5py handle opened
before they forked, so :meth:`CacheReader.file` reopens when the process id changes.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from vlprobe.cache.schema import (
    PARTIAL_SUFFIX,
    READ_CACHE_BYTES,
    SCHEMA_VERSION,
    SPLIT_NAMES,
    example_path,
    pair_path,
    token_path,
    unit_path,
)


class CacheError(RuntimeError):
    """A cache file that is missing, unfinished or of another schema."""


def open_cache_file(path: str | Path) -> h5py.File:
    """Open ``path`` read-only with a read cache large enough for several full chunks."""
    path = Path(path)
    if not path.exists():
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        hint = (
            f" A partial file {partial} exists: its extraction did not finish; delete it and "
            "run `vlprobe extract` again."
            if partial.exists()
            else " Build it with `vlprobe extract` (see README)."
        )
        raise CacheError(f"no cache at {path}.{hint}")
    f = h5py.File(path, "r", rdcc_nbytes=READ_CACHE_BYTES, rdcc_nslots=10007)
    if int(f.attrs.get("complete", 0)) != 1:
        f.close()
        raise CacheError(f"{path} is not a finished vlprobe cache (no 'complete' flag).")
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        f.close()
        raise CacheError(
            f"{path} has cache schema {version}, this vlprobe reads {SCHEMA_VERSION}: re-extract."
        )
    return f


class CacheReader:
    """Read-only view of a cache; small index arrays are loaded once, activations never."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid = -1
        self.file  # noqa: B018 - validate eagerly so errors surface at construction

    @property
    def file(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = open_cache_file(self.path)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict:
        """Pickle without the handle: each worker opens its own."""
        return {"path": self.path, "_file": None, "_pid": -1}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

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
