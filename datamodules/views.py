"""Feature views: which cache arrays a probe reads, and how rows become ``(B, P, D)`` inputs.

A view owns a *table* (pairs or units) with one label per row; splits select table rows.
``P`` is the number of probes trained side by side: layers for embeddings, heads for attention.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from datamodules.sources import LayerRows, Rows, contiguous_segments
from vlprobe.cache.reader import CacheReader

MAX_GAP = 256  # table rows further apart than this are read as separate slices


@dataclass
class FeatureView(ABC):
    """Rows of one table, their labels, and how to read their features."""

    reader: CacheReader
    labels: np.ndarray  # (N_table,) int64, -1 = row not used by this task
    probe_names: list[str]
    class_names: list[str]
    row_split: np.ndarray  # (N_table,) int8 split id of every table row
    # (N_table,) the lexical/visual type of each row, for control tasks (Hewitt and Liang 2019)
    control_types: np.ndarray | None = None

    def rows(self, split_id: int) -> np.ndarray:
        """Sorted table rows of a split that carry a label."""
        return np.flatnonzero((self.row_split == split_id) & (self.labels >= 0))

    def with_labels(self, labels: np.ndarray) -> FeatureView:
        """The same features (and loaded arrays) with other labels: controls, shuffles."""
        return dataclasses.replace(self, labels=labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abstractmethod
    def sources(self) -> list[LayerRows | Rows]: ...

    @abstractmethod
    def _read_segment(self, rows: np.ndarray) -> np.ndarray:
        """Features ``(len(rows), P, D)`` for increasing rows that lie close together."""

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Features for sorted ``rows``: one contiguous read per run of nearby rows."""
        parts = [self._read_segment(rows[a:b]) for a, b in contiguous_segments(rows, MAX_GAP)]
        return np.concatenate(parts, axis=0)

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.sources())

    def load_into_memory(self) -> None:
        for source in self.sources():
            source.load()


@dataclass
class UnitEmbeddingView(FeatureView):
    """Per-layer probes on unit embeddings: ``[left]`` or ``[left; right]`` per table row."""

    left: LayerRows = None  # type: ignore[assignment]
    left_index: np.ndarray = None  # type: ignore[assignment]  # (N_table,) unit id per row
    right: LayerRows | None = None
    right_index: np.ndarray | None = None

    def sources(self) -> list[LayerRows | Rows]:
        if self.right is None or self.right.name == self.left.name:
            return [self.left]
        return [self.left, self.right]

    def _gather(self, source: LayerRows, ids: np.ndarray) -> np.ndarray:
        lo, hi = int(ids.min()), int(ids.max()) + 1
        return _take_units(source.read(lo, hi), ids - lo)

    def _read_segment(self, rows: np.ndarray) -> np.ndarray:
        left_ids = self.left_index[rows]
        if self.right is None or self.right_index is None:
            return self._gather(self.left, left_ids)
        right_ids = self.right_index[rows]
        lo = int(min(left_ids.min(), right_ids.min()))
        hi = int(max(left_ids.max(), right_ids.max())) + 1
        spans = int(np.ptp(left_ids)) + int(np.ptp(right_ids)) + 2
        if self.right.name == self.left.name and self.right.layers == self.left.layers:
            if hi - lo <= spans:
                # Both sides index one array and overlap (a pair's subject and object are
                # regions of one image): one read serves both, half of a stream step's h5py
                # work (bench/loader_throughput.py).
                block = self.left.read(lo, hi)  # (P, hi - lo, d)
                left, right = _take_units(block, left_ids - lo), _take_units(block, right_ids - lo)
                return np.concatenate([left, right], axis=2)
        left, right = self._gather(self.left, left_ids), self._gather(self.right, right_ids)
        return np.concatenate([left, right], axis=2)


def _take_units(block: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Units ``ids`` of a ``(P, n, d)`` layer-major block as ``(len(ids), P, d)``."""
    return np.ascontiguousarray(block[:, ids].transpose(1, 0, 2))


@dataclass
class PairAttentionView(FeatureView):
    """Pair attention ``(N, A, H, 2)``: one probe per head (``per_head``) or one on all heads."""

    attention: Rows = None  # type: ignore[assignment]
    per_head: bool = True

    def sources(self) -> list[LayerRows | Rows]:
        return [self.attention]

    def _read_segment(self, rows: np.ndarray) -> np.ndarray:
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        block = self.attention.read(lo, hi)[rows - lo]  # (B, A, H, 2)
        b, a, h, two = block.shape
        return block.reshape(b, a * h, two) if self.per_head else block.reshape(b, 1, a * h * two)


def type_ids(keys: list[str] | np.ndarray) -> np.ndarray:
    """Integer ids for control-task types given as strings (equal strings, equal ids)."""
    _, ids = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    return ids.astype(np.int64)


def example_texts(reader: CacheReader) -> list[str]:
    """The input words of every example (``examples/text``), lower-cased."""
    return [
        t.decode().lower() if isinstance(t, bytes) else str(t).lower()
        for t in reader.array("examples/text")
    ]


def layer_probe_names(layers: list[int]) -> list[str]:
    return [f"layer_{i:02d}" for i in layers]


def head_probe_names(num_layers: int, num_heads: int) -> list[str]:
    """``L01H01`` ...: 1-based like the figures (hidden layer 0 is the embeddings)."""
    return [f"L{a + 1:02d}H{h + 1:02d}" for a in range(num_layers) for h in range(num_heads)]
