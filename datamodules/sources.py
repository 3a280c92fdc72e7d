"""Where probe features come from: the HDF5 file (streaming) or arrays loaded once (in memory).

Both expose the same ``read(lo, hi)`` over a contiguous row range, so the two modes share every
line of batching code and give identical batches for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlprobe.cache.reader import CacheReader


@dataclass
class LayerRows:
    """A layer-major activation dataset ``(L, N, d)`` restricted to some layers."""

    reader: CacheReader
    name: str
    layers: list[int]
    _memory: np.ndarray | None = None

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``[lo, hi)`` of the selected layers: ``(len(layers), hi - lo, d)``."""
        if self._memory is not None:
            return self._memory[:, lo:hi]
        ds = self.reader.file[self.name]
        if self.layers == list(range(ds.shape[0])):
            return ds[:, lo:hi]
        return ds[self.layers, lo:hi]

    def nbytes(self) -> int:
        ds = self.reader.file[self.name]
        return len(self.layers) * int(np.prod(ds.shape[1:])) * ds.dtype.itemsize

    def load(self) -> None:
        if self._memory is not None:  # views sharing a source (controls, seeds) load it once
            return
        ds = self.reader.file[self.name]
        self._memory = ds[()] if self.layers == list(range(ds.shape[0])) else ds[self.layers]


@dataclass
class Rows:
    """A row-major dataset ``(N, ...)``, e.g. pair attention ``(N, A, H, 2)``."""

    reader: CacheReader
    name: str
    _memory: np.ndarray | None = None

    def read(self, lo: int, hi: int) -> np.ndarray:
        if self._memory is not None:
            return self._memory[lo:hi]
        return self.reader.file[self.name][lo:hi]

    def nbytes(self) -> int:
        ds = self.reader.file[self.name]
        return int(np.prod(ds.shape)) * ds.dtype.itemsize

    def load(self) -> None:
        if self._memory is None:
            self._memory = self.reader.file[self.name][()]


def contiguous_segments(sorted_ids: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Split increasing ids into ``[start, stop)`` position runs whose id gaps are <= max_gap."""
    if sorted_ids.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_ids) > max_gap) + 1
    edges = [0, *breaks.tolist(), sorted_ids.size]
    return list(zip(edges[:-1], edges[1:], strict=True))
