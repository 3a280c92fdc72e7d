"""Minimum description length by online code (Voita & Titov 2020, "Information-Theoretic
Probing with Minimum Description Length").

The data are sent in blocks ``[0, t1), [t1, t2), ..., [t_{k-1}, n)``. The first block is sent
with the uniform code (``t1 * log2(C)`` bits); every later block is sent with a probe trained on
all data before it, costing its summed ``-log2 p(y | x)``. Fewer bits than the uniform code
``n * log2(C)`` means the labels are easy to extract from the representation; compression =
uniform / online. Training is the caller's job: this module is the arithmetic, the blocks and
the regularisation grid.

A block's model must be a good *code*, not only a good classifier: an unregularised probe
picked by validation accuracy on a few hundred rows is over-confident, and its wrong answers
cost tens of bits each. So each block's model is chosen by validation loss among L2 strengths
``MDL_C_GRID`` (scikit-learn's ``C``: penalty ``||w||^2 / (2 C n)`` per example) and their
limit ``C -> 0``, the label prior of the rows seen so far (``prior_probabilities``): a block
the probe cannot yet help with then costs about the prior's bits, not more than the uniform
code. Every model codes through ``code_probabilities``, which keeps ``SMOOTHING`` of the mass
uniform, so a label no row before it had costs at most ``log2(C / SMOOTHING)`` bits. That is
the ``smoothed`` variant; ``voita`` is the plain online code of Voita and Titov: the L2 grid
only, no prior candidate, no smoothing (``VARIANT_SMOOTHING``).

Neither the uniform code nor 1 is a no-information line on unbalanced labels: the label prior
alone, sent online (:func:`prior_codelength`), already compresses them. The prior's code
length is the baseline a representation has to beat (compression over the prior).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import TypeVar

import numpy as np

T = TypeVar("T")

DEFAULT_FRACTIONS: tuple[float, ...] = (
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.0625,
    0.125,
    0.25,
    0.5,
    1.0,
)
"""The block boundaries of Voita & Titov (0.1% ... 100% of the training data)."""

MDL_C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""Inverse L2 strengths tried per block (``C`` of scikit-learn's LogisticRegression)."""

PRIOR_C = 0.0
"""The ``C`` reported for a block coded by the label prior (the infinite-penalty limit)."""

SMOOTHING = 1e-3
"""Probability mass every code spreads uniformly over the classes (``smoothed`` variant)."""

VARIANT_SMOOTHING: dict[str, float] = {"smoothed": SMOOTHING, "voita": 0.0}
"""``probing.mdl_variant`` -> the mass its codes spread uniformly. ``smoothed`` (default): the
label prior is a candidate of every block and codes keep ``SMOOTHING`` uniform; ``voita``: the
plain online code (L2 grid only, raw probabilities), comparable with published numbers."""

MDL_VARIANTS: tuple[str, ...] = tuple(VARIANT_SMOOTHING)


def online_blocks(
    train_rows: np.ndarray, seed: int, fractions: Sequence[float] | None = None
) -> tuple[np.ndarray, list[int]]:
    """The training rows in a seeded coding order, and the block ends over them."""
    order = np.random.default_rng(seed).permutation(np.asarray(train_rows))
    return order, block_edges(len(order), fractions or DEFAULT_FRACTIONS)


def l2_strength(c: float, n: int) -> float:
    """Per-example L2 coefficient ``lambda`` of ``mean CE + lambda / 2 ||w||^2`` equal to
    scikit-learn's ``C * sum CE + 1/2 ||w||^2`` on ``n`` examples: ``1 / (C n)``."""
    if c <= 0 or n < 1:
        raise ValueError("C must be positive and n at least 1")
    return 1.0 / (c * n)


def code_probabilities(p: T, num_classes: int, smoothing: float = SMOOTHING) -> T:
    """A model's probabilities (array or tensor) as coded: ``smoothing`` of the mass uniform."""
    return (1 - smoothing) * p + smoothing / num_classes


def prior_probabilities(seen: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) add-one (Laplace) label frequencies of the rows seen so far: the limit of a probe
    whose penalty forces its weights to zero, without a zero for a class not yet seen."""
    counts = np.bincount(np.asarray(seen), minlength=num_classes)
    return (counts + 1) / (counts.sum() + num_classes)


def prior_bits(
    seen: np.ndarray, coded: np.ndarray, num_classes: int, smoothing: float = SMOOTHING
) -> float:
    """Summed bits of the labels ``coded`` under the (coded) add-one prior of ``seen``."""
    p = code_probabilities(prior_probabilities(seen, num_classes), num_classes, smoothing)
    return float(-np.log2(p[np.asarray(coded)]).sum())


def prior_codelength(
    labels: np.ndarray, block_edges: Sequence[int], num_classes: int, smoothing: float = SMOOTHING
) -> float:
    """Online code length (bits) of ``labels`` (in coding order) with no representation: the
    first block uniform, every later block under the add-one label frequencies of the blocks
    before it. The baseline of compression over the prior (``mdl_prior_bits``)."""
    labels = np.asarray(labels)
    edges = [int(e) for e in block_edges]
    later = sum(
        prior_bits(labels[:lo], labels[lo:hi], num_classes, smoothing) for lo, hi in pairwise(edges)
    )
    return edges[0] * math.log2(num_classes) + later


def block_edges(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[int]:
    """Sorted unique block ends ``floor(f * n)``, at least 1 and at most ``n``."""
    if n < 1:
        raise ValueError("n must be positive")
    if any(not 0 < f <= 1 for f in fractions):
        raise ValueError("fractions must lie in (0, 1]")
    # the epsilon keeps e.g. 0.032 * 1000 = 31.999... at 32
    return sorted({min(n, max(1, math.floor(f * n + 1e-9))) for f in fractions})


def online_codelength(
    block_edges: Sequence[int],
    block_losses_bits: Sequence[float],
    first_block_size: int,
    num_classes: int,
) -> dict[str, float]:
    """Online code length from per-block losses.

    Args:
        block_edges: ``[t1, ..., n]`` increasing block ends (``block_edges(n)``).
        block_losses_bits: for each later block ``[t_i, t_{i+1})``, the summed ``-log2 p`` of
            its labels under a probe trained on ``[0, t_i)``; ``len(block_edges) - 1`` values.
        first_block_size: ``t1``, sent with the uniform code.
        num_classes: ``C``.

    Returns:
        ``online_codelength`` and ``uniform_codelength`` (bits), ``compression`` (uniform /
        online), ``first_block_bits``, ``num_examples`` (``n``).
    """
    edges = [int(e) for e in block_edges]
    if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)) or edges[0] < 1:
        raise ValueError("block_edges must be increasing positive integers")
    if first_block_size != edges[0]:
        raise ValueError(f"first_block_size {first_block_size} != first edge {edges[0]}")
    if len(block_losses_bits) != len(edges) - 1:
        raise ValueError(f"need {len(edges) - 1} block losses, got {len(block_losses_bits)}")
    if num_classes < 2:
        raise ValueError("num_classes must be at least 2")
    bits_per_label = math.log2(num_classes)
    first = first_block_size * bits_per_label
    online = first + float(sum(block_losses_bits))
    uniform = edges[-1] * bits_per_label
    return {
        "online_codelength": online,
        "uniform_codelength": uniform,
        "compression": uniform / online if online > 0 else math.inf,
        "first_block_bits": first,
        "num_examples": float(edges[-1]),
    }
