"""Fit an eraser on the train split of a plain cache at one layer, streaming its rows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import SPLIT_IDS
from vlprobe.intervention.concepts import Concept
from vlprobe.intervention.erasers import Eraser, inlp, leace, leace_fitter, random_subspace

BLOCK_ROWS = 4096  # rows read per step: the eraser never needs the whole layer in memory


def train_rows(reader: CacheReader, concept: Concept, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unit rows of the train split that carry one of the concept's classes, and those
    classes."""
    labels, _ = concept.labels(reader, top_k)
    rows = np.flatnonzero((concept.unit_split(reader) == SPLIT_IDS["train"]) & (labels >= 0))
    return rows, labels[rows]


def blocks(
    reader: CacheReader, concept: Concept, layer: int, rows: np.ndarray, labels: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(features, labels)`` of ``rows`` at ``layer``, one contiguous read per block."""
    data = reader.file[concept.features]
    for start in range(0, rows.size, BLOCK_ROWS):
        chunk = rows[start : start + BLOCK_ROWS]
        lo, hi = int(chunk[0]), int(chunk[-1]) + 1
        yield data[layer, lo:hi][chunk - lo].astype(np.float64), labels[start : start + BLOCK_ROWS]


def check_layer(reader: CacheReader, layer: int) -> None:
    if not 0 <= layer <= reader.num_layers:
        raise ValueError(
            f"intervention.layer={layer}: {reader.path} has hidden layers 0-{reader.num_layers}"
        )


def fit_eraser(
    reader: CacheReader,
    concept: Concept,
    kind: str,
    layer: int,
    top_k: int,
    draw: int = 0,
    iterations: int = 10,
    rank: int | None = None,
) -> Eraser:
    """The ``kind`` eraser of ``concept`` at hidden layer ``layer`` (0: the embeddings).

    ``random``: a random subspace of ``rank`` dimensions (None: LEACE's rank on the same rows;
    ``draw`` seeds it), kept at the same mean: the control an erasure is measured against.
    """
    check_layer(reader, layer)
    rows, labels = train_rows(reader, concept, top_k)
    classes = int(labels.max()) + 1
    if kind == "inlp":
        x = np.concatenate([x for x, _ in blocks(reader, concept, layer, rows, labels)])
        return inlp(x, labels, iterations)
    fitter = leace_fitter(blocks(reader, concept, layer, rows, labels), reader.hidden_size, classes)
    eraser = leace(fitter)
    if kind == "leace":
        return eraser
    if kind == "random":
        return random_subspace(eraser.dim, rank or eraser.rank, eraser.bias, seed=draw)
    raise ValueError(f"intervention.kind={kind!r}; valid: leace, inlp, random")
