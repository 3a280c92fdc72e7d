"""Batches of consecutive cache rows, shuffled by block, and split across distributed ranks.

A batch is a block of consecutive rows (one or a few contiguous HDF5 reads), shuffled in
memory; block order is shuffled per epoch. Under a distributed strategy:

- training (``shuffle``): every rank draws the same permutation (seed and epoch) and takes
  every ``num_replicas``-th block of it, padded with blocks from its start so every rank takes
  the same number of steps (as ``DistributedSampler`` pads);
- evaluation: rank ``r`` reads the ``r``-th contiguous slice of the rows, no padding, so every
  row is counted exactly once in the synced metrics and each rank has batches to run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class BlockBatchSampler(Sampler[list[int]]):
    """Batches of consecutive positions; block order (and order within) shuffled per epoch.

    The epoch counter advances on every shuffled pass, so a run is reproducible from ``seed``
    alone. With one replica the batches are those of a single process.
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.num_rows, self.batch_size, self.shuffle, self.seed = (
            num_rows,
            batch_size,
            shuffle,
            seed,
        )
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def _blocks(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def _row_slice(self) -> tuple[int, int]:
        """This rank's contiguous rows for evaluation."""
        n, w = self.num_rows, self.num_replicas
        return self.rank * n // w, (self.rank + 1) * n // w

    def __len__(self) -> int:
        if self.shuffle:
            return -(-self._blocks() // self.num_replicas)
        lo, hi = self._row_slice()
        return -(-(hi - lo) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if not self.shuffle:
            lo, hi = self._row_slice()
            for start in range(lo, hi, self.batch_size):
                yield list(range(start, min(start + self.batch_size, hi)))
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        starts = rng.permutation(np.arange(0, self.num_rows, self.batch_size))
        # every rank draws every block's inner permutation, so all ranks share one sequence
        blocks = [
            rng.permutation(np.arange(s, min(s + self.batch_size, self.num_rows))) for s in starts
        ]
        if blocks:
            blocks += blocks[: len(self) * self.num_replicas - len(blocks)]
        for block in blocks[self.rank :: self.num_replicas]:
            yield block.tolist()


class SeedsBatchSampler(Sampler[list[list[int]]]):
    """One batch per seed per step, each from its own :class:`BlockBatchSampler`: every seed
    sees exactly the batches of its separate run, while all seeds share one training loop."""

    def __init__(self, samplers: Sequence[BlockBatchSampler]) -> None:
        if len({len(s) for s in samplers}) != 1:
            raise ValueError("the seeds' samplers must take the same number of steps")
        self.samplers = list(samplers)

    def __len__(self) -> int:
        return len(self.samplers[0])

    def __iter__(self) -> Iterator[list[list[int]]]:
        for batches in zip(*self.samplers, strict=True):
            yield list(batches)
