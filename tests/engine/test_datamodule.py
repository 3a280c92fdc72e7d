"""Streaming and in-memory loaders: same batches, whole-batch reads, block shuffling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.cache_datamodule import CacheProbeDataModule
from datamodules.samplers import BlockBatchSampler
from probes.tasks.visual_relation import VisualRelationTask
from vlprobe.cache.reader import CacheReader


def _views(path: Path, inputs: tuple[str, ...] = ("embedding", "head")):
    task = VisualRelationTask(subtasks=("identification",), inputs=inputs)
    return task.views(CacheReader(path), layers=None)


def _batches(dm: CacheProbeDataModule, epochs: int = 2) -> list[dict[str, torch.Tensor]]:
    loader = dm.train_dataloader()
    return [batch for _ in range(epochs) for batch in loader]


@pytest.mark.parametrize("kind", ["embedding", "head"])
def test_stream_and_memory_give_identical_batches(planted_cache: Path, kind: str) -> None:
    ((_, stream_view),) = _views(planted_cache, (kind,))
    ((_, memory_view),) = _views(planted_cache, (kind,))
    stream = CacheProbeDataModule(stream_view, batch_size=64, mode="stream", seed=3)
    memory = CacheProbeDataModule(memory_view, batch_size=64, mode="memory", seed=3)
    a, b = _batches(stream), _batches(memory)
    assert len(a) == len(b) > 2
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["x"], y["x"]) and torch.equal(x["y"], y["y"])


def test_embedding_batch_matches_direct_reads(planted_cache: Path) -> None:
    ((_, view),) = _views(planted_cache, ("embedding",))
    dm = CacheProbeDataModule(view, batch_size=32, mode="stream")
    ds = dm.datasets["train"]
    positions = [5, 1, 3]
    batch = ds.__getitems__(positions)
    f = CacheReader(planted_cache).file
    subject = f["pairs/relation/subject"][()]
    obj = f["pairs/relation/object"][()]
    emb = f["units/region/embedding"][()]
    for i, pos in enumerate(positions):
        row = ds.rows[pos]
        expected = np.concatenate([emb[:, subject[row]], emb[:, obj[row]]], axis=1)
        np.testing.assert_array_equal(batch["x"][i].numpy(), expected)
        assert batch["y"][i].item() == f["pairs/relation/related"][row]


def test_sampler_covers_every_row_once_and_reshuffles_blocks() -> None:
    sampler = BlockBatchSampler(num_rows=103, batch_size=10, shuffle=True, seed=0)
    first, second = list(sampler), list(sampler)
    assert sorted(i for b in first for i in b) == list(range(103))
    assert all(max(b) - min(b) < 10 for b in first)  # a batch is one block of consecutive rows
    assert [sorted(b) for b in first] != [sorted(b) for b in second]  # block order changes
    again = BlockBatchSampler(num_rows=103, batch_size=10, shuffle=True, seed=0)
    assert list(again) == first


def test_auto_mode_respects_the_memory_budget(planted_cache: Path) -> None:
    ((_, view),) = _views(planted_cache, ("embedding",))
    assert CacheProbeDataModule(view, mode="auto", memory_budget_mb=1e-3).mode == "stream"
    ((_, view),) = _views(planted_cache, ("embedding",))
    assert CacheProbeDataModule(view, mode="auto", memory_budget_mb=1024).mode == "memory"


def test_worker_processes_open_the_file_themselves(planted_cache: Path) -> None:
    ((_, view),) = _views(planted_cache, ("head",))
    dm = CacheProbeDataModule(view, batch_size=64, mode="stream", num_workers=2, seed=1)
    single = CacheProbeDataModule(_views(planted_cache, ("head",))[0][1], batch_size=64, seed=1)
    single.mode = "stream"
    got = [b["x"] for b in dm.val_dataloader()]
    ref = [b["x"] for b in single.val_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(got, ref, strict=True))
