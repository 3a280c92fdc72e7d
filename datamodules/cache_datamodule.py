"""LightningDataModule streaming probe features from the HDF5 cache, or from memory.

Batches are read whole: a batch sampler hands the dataset a block of consecutive rows, which
becomes one or a few contiguous slice reads, then is shuffled in memory. Block order is
shuffled per epoch. Workers open the file lazily (see CacheReader), never before forking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.samplers import BlockBatchSampler, SeedsBatchSampler
from datamodules.views import FeatureView
from vlprobe.cache.schema import SPLIT_IDS

log = logging.getLogger(__name__)

#: ``loader.memory_budget_mb`` when a datamodule is built without one
DEFAULT_MEMORY_BUDGET_MB = 2048.0


def fits_memory(nbytes: float, budget_mb: float) -> bool:
    """The one memory-budget test: the loader's memory mode (the view's arrays) and the
    full-batch solver (one probe's float32 features, ``Settings.solver_for``) both ask it."""
    return nbytes <= budget_mb * 2**20


class ProbeFeatureDataset(Dataset):
    """One split of a view; ``__getitems__`` reads a whole batch at once."""

    def __init__(
        self,
        view: FeatureView,
        split: str,
        rows: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> None:
        """``labels``: ``(N_table, L)`` label sets read with each batch (``y`` is ``(B, L)``)."""
        self.view = view
        self.rows = view.rows(SPLIT_IDS[split]) if rows is None else np.sort(rows)
        self.labels = view.labels if labels is None else labels

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitems__(self, positions: list[Any]) -> Any:
        """A batch of ``positions``; a list of position lists (``SeedsBatchSampler``): one
        batch each."""
        if positions and isinstance(positions[0], list):
            return [self.__getitems__(part) for part in positions]
        rows = self.rows[np.asarray(positions)]
        return {
            "x": torch.from_numpy(self.view.read_batch(rows)),
            "y": torch.from_numpy(self.labels[rows].astype(np.int64)),
        }

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([position])
        return {k: v[0] for k, v in batch.items()}


def _whole_batch(batch: Any) -> Any:
    """Collate for batches that ``__getitems__`` already built (picklable for workers)."""
    return batch


class CacheProbeDataModule(pl.LightningDataModule):
    """Train / val / test loaders over one :class:`FeatureView`.

    ``mode``: ``stream`` reads from disk per batch; ``memory`` loads the view's arrays once;
    ``auto`` picks memory when they fit ``memory_budget_mb``.
    """

    def __init__(
        self,
        view: FeatureView,
        batch_size: int = 256,
        mode: str = "auto",
        memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
        num_workers: int = 0,
        seed: int = 0,
        rows: dict[str, np.ndarray] | None = None,
        label_sets: np.ndarray | None = None,
        seeds: Sequence[int] | None = None,
    ) -> None:
        """``rows`` replaces a split's table rows (MDL trains on prefixes of the training set);
        ``label_sets`` (``(N_table, L)``, -1 where the view's labels are) gives every batch all
        L label sets (task, controls) at once, so probes of every label set share one read.
        ``seeds``: each training step is a list of batches, one per seed in that seed's
        order (``seed`` is then unused): several seeds train in one loop."""
        super().__init__()
        if mode not in ("auto", "stream", "memory"):
            raise ValueError(f"loader.mode must be auto, stream or memory, got {mode!r}")
        self.view, self.batch_size, self.num_workers, self.seed = (
            view,
            batch_size,
            num_workers,
            seed,
        )
        self.mode = self._choose_mode(mode, memory_budget_mb)
        self._input_stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._rows = rows or {}
        used = (view.labels >= 0)[:, None]
        if label_sets is not None and not bool(((label_sets >= 0) == used).all()):
            raise ValueError("every label set must label exactly the rows the view labels")
        self.label_sets = label_sets
        self.seeds = None if seeds is None else [int(x) for x in seeds]
        self._datasets: dict[str, ProbeFeatureDataset] | None = None

    def setup(self, stage: str | None = None) -> None:
        """Build the split datasets (and load the view in memory mode) in this process.

        Lightning calls it on every rank; :attr:`datasets` calls it on first use too, since the
        engine reads sizes and input statistics before ``fit``. Built once per datamodule.
        """
        if self._datasets is not None:
            return
        if self.mode == "memory":
            self.view.load_into_memory()
        datasets = {
            split: ProbeFeatureDataset(self.view, split, self._rows.get(split), self.label_sets)
            for split in SPLIT_IDS
        }
        for split, ds in datasets.items():
            if len(ds) == 0 and split != "test":
                raise ValueError(
                    f"the {split} split of {self.view.reader.path} has no labelled rows for this "
                    "task: check the split lists and the task's label settings"
                )
        self._datasets = datasets

    @property
    def datasets(self) -> dict[str, ProbeFeatureDataset]:
        self.setup()
        assert self._datasets is not None
        return self._datasets

    def _choose_mode(self, mode: str, budget_mb: float) -> str:
        if mode != "auto":
            return mode
        needed_mb = self.view.nbytes() / 2**20
        chosen = "memory" if fits_memory(self.view.nbytes(), budget_mb) else "stream"
        log.info(
            "loader mode %s: view needs %.1f MiB, budget %.0f MiB", chosen, needed_mb, budget_mb
        )
        return chosen

    def _loader(self, split: str, shuffle: bool, all_ranks: bool = False) -> DataLoader:
        """``all_ranks``: every row in this process, for use outside the trainer (MDL)."""
        ds = self.datasets[split]
        # under a distributed strategy each rank reads its own blocks (datamodules/samplers.py)
        trainer = None if all_ranks else self.trainer

        def sampler(seed: int) -> BlockBatchSampler:
            return BlockBatchSampler(
                len(ds),
                self.batch_size,
                shuffle=shuffle,
                seed=seed,
                num_replicas=trainer.world_size if trainer else 1,
                rank=trainer.global_rank if trainer else 0,
            )

        batches: BlockBatchSampler | SeedsBatchSampler = sampler(self.seed)
        if shuffle and self.seeds is not None:
            batches = SeedsBatchSampler([sampler(seed) for seed in self.seeds])
        return DataLoader(
            ds,
            batch_sampler=batches,
            collate_fn=_whole_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def full_test_dataloader(self) -> DataLoader:
        """All test rows in this process, whatever the rank (MDL codes a block outside fit)."""
        return self._loader("test", shuffle=False, all_ranks=True)

    def input_stats(self, max_rows: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-probe feature mean and std (``training_stats``) over at most ``max_rows`` evenly
        spaced training rows, read one batch at a time (the whole sample at once took GBs for
        wide views, 13 layers x 1536-d, bench/fused_vs_separate.py). Computed once per
        datamodule."""
        if max_rows in self._input_stats:
            return self._input_stats[max_rows]
        rows = self.datasets["train"].rows
        rows = rows[:: max(1, -(-rows.size // max_rows))]  # at most max_rows, evenly spaced
        if rows.size == 0:
            raise ValueError("input statistics need at least one training row")

        def blocks() -> Iterator[torch.Tensor]:
            for start in range(0, rows.size, self.batch_size):
                x = self.view.read(rows[start : start + self.batch_size])
                yield torch.from_numpy(x.astype(np.float32))

        self._input_stats[max_rows] = training_stats(blocks, rows.size, axis=0)
        return self._input_stats[max_rows]


def training_stats(
    blocks: Callable[[], Iterable[torch.Tensor]], rows: int, axis: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training mean and population std per feature (as scikit-learn's ``StandardScaler``;
    std 1 for constant features, which are only centred): the one standardisation of both
    solvers (the loader's ``input_stats``, ``full_batch.read_standardised``).

    ``blocks()`` yields float32 blocks of the ``rows`` training rows along ``axis``. Two
    passes (the mean, then squares of the centred rows), float32 sums within a block
    accumulated in float64: one float64 reduction over a wide view took 10x longer, and the
    centred second pass keeps the variance exact when the mean dwarfs the spread.
    """

    def total(fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        out: torch.Tensor | None = None
        for block in blocks():
            part = fn(block).sum(axis)
            out = part.double() if out is None else out + part
        if out is None:
            raise ValueError("input statistics need at least one training row")
        return out

    n = max(1, rows)
    mean = total(lambda b: b).div_(n).float()
    var = total(lambda b: (b - mean.unsqueeze(axis)).square_()).div_(n).float()
    std = var.sqrt()
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))
