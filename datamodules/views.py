"""Feature views: which cache arrays a probe reads, and how rows become ``(B, P, D)`` inputs.

A view owns a *table* (pairs or units) with one label per row; splits select table rows.
``P`` is the number of probes trained side by side: layers for embeddings, heads for attention.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from datamodules.sources import LayerRows, Rows, contiguous_segments
from vlprobe.cache.reader import CacheReader
from vlprobe.reporting.identity import ProbeId, head_ids, layer_ids

#: the probe identities views are built with (layers: 0 = embeddings; heads: 1-based)
layer_probe_ids = layer_ids
head_probe_ids = head_ids

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
    #: what each probe reads (``probe_ids[k].name == probe_names[k]``): the rows' identity
    probe_ids: list[ProbeId] = field(default_factory=list)
    #: ``_read_segment`` accepts its rows in any order (it reads their min..max span)
    segment_any_order: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.probe_ids and [p.name for p in self.probe_ids] != list(self.probe_names):
            raise ValueError("a view's probe_ids must name its probe_names, in order")

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
        """Features ``(len(rows), P, D)``, a new array, for increasing rows that lie close
        together (in any order where ``segment_any_order`` is set)."""

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Features for sorted ``rows``: one contiguous read per run of nearby rows."""
        parts = [self._read_segment(rows[a:b]) for a, b in contiguous_segments(rows, MAX_GAP)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def read_batch(self, rows: np.ndarray) -> np.ndarray:
        """Features for ``rows`` in the order given (a shuffled batch).

        Disk reads still go in increasing order. A batch from one block of nearby rows is
        gathered straight in the given order; otherwise read sorted and put back in order
        (one more copy of the batch, measured in bench/loader_throughput.py).
        """
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        if self.segment_any_order and len(contiguous_segments(ordered, MAX_GAP)) == 1:
            return self._read_segment(rows)
        block = self.read(ordered)
        features = np.empty_like(block)
        features[order] = block
        return features

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

    segment_any_order: ClassVar[bool] = True

    def sources(self) -> list[LayerRows | Rows]:
        if self.right is None or self.right.name == self.left.name:
            return [self.left]
        return [self.left, self.right]

    def _read_segment(self, rows: np.ndarray) -> np.ndarray:
        sides = [(self.left, self.left_index[rows])]
        if self.right is not None and self.right_index is not None:
            sides.append((self.right, self.right_index[rows]))
        spans = [(int(ids.min()), int(ids.max()) + 1) for _, ids in sides]
        lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
        right = self.right
        same_array = right is not None and (right.name, right.layers) == (
            self.left.name,
            self.left.layers,
        )
        if len(sides) == 2 and same_array and hi - lo <= sum(b - a for a, b in spans):
            # Both sides index one array and overlap (a pair's subject and object are regions
            # of one image): one read serves both, half the h5py work of a stream step.
            block = self.left.read(lo, hi)
            blocks = [(block, lo), (block, lo)]
        else:
            blocks = [(src.read(a, b), a) for (src, _), (a, b) in zip(sides, spans, strict=True)]
        widths = [block.shape[2] for block, _ in blocks]
        num_probes = blocks[0][0].shape[0]
        out = np.empty((rows.size, num_probes, sum(widths)), dtype=blocks[0][0].dtype)
        col = 0
        for (block, start), (_, ids), width in zip(blocks, sides, widths, strict=True):
            # (P, n, d) layer-major block -> (B, P, d), written in place: no concatenate copy
            out[:, :, col : col + width] = block[:, ids - start].transpose(1, 0, 2)
            col += width
        return out


@dataclass
class PairAttentionView(FeatureView):
    """Pair attention ``(N, A, H, 2)``: one probe per head (``per_head``) or one on all heads."""

    attention: Rows = None  # type: ignore[assignment]
    per_head: bool = True

    def sources(self) -> list[LayerRows | Rows]:
        return [self.attention]

    segment_any_order: ClassVar[bool] = True

    def _read_segment(self, rows: np.ndarray) -> np.ndarray:
        lo, hi = int(rows.min()), int(rows.max()) + 1
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
        for t in reader.example("text")
    ]
