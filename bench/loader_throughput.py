"""Streaming datamodule throughput vs a raw contiguous h5py read of the same arrays.

One training epoch of ``CacheProbeDataModule(mode="stream")`` (batches as the probes get
them) against reading the epoch's source rows (the training split's range of the activation
dataset) with plain contiguous h5py slices of 8 MiB. ``feature_ratio`` compares the bytes of
features the loader hands out per second with the raw read's bytes per second (the relation
view hands out each region twice, as subject and object); ``source_ratio`` counts each
source byte once (``raw time / epoch time``).

Two page-cache states: ``warm`` (the file was just read) and ``cold`` (the file's pages are
dropped with ``posix_fadvise(DONTNEED)`` before each timed read: the disk-bound case that
streaming exists for). Sweeps from the defaults (schema chunk size, 64 MiB chunk cache, block
shuffling, no workers): chunk size (caches re-written with other chunk rows),
``rdcc_nbytes``, shuffling (sequential / blocks / fully random rows), DataLoader workers,
and workers in a real fused training epoch (13 layers, stream mode).

    python bench/loader_throughput.py            # 20k pairs, 13 x 768-d
    python bench/loader_throughput.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from _common import (
    add_common_args,
    compose_cfg,
    ensure_cache,
    finish,
    print_table,
    quiet,
    rechunked_copy,
    relation_views,
    set_threads,
    spec_from,
    split_rows,
    timed,
)
from torch.utils.data import DataLoader, Sampler

import vlprobe.cache.reader as cache_reader
from datamodules.cache_datamodule import CacheProbeDataModule, _whole_batch
from datamodules.samplers import BlockBatchSampler
from probes.run import build_engine
from vlprobe.cache.schema import READ_CACHE_BYTES, TARGET_CHUNK_BYTES

TARGET = 0.70
SOURCE = {"embedding": "units/region/embedding", "head": "pairs/relation/attention"}
KIB, MIB = 2**10, 2**20


class RandomBatchSampler(Sampler[list[int]]):
    """Fully random batches (the usual ``shuffle=True``): rows from all over the split."""

    def __init__(self, num_rows: int, batch_size: int, seed: int = 0) -> None:
        self.num_rows, self.batch_size, self.seed = num_rows, batch_size, seed

    def __len__(self) -> int:
        return (self.num_rows + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng(self.seed).permutation(self.num_rows)
        for start in range(0, self.num_rows, self.batch_size):
            yield order[start : start + self.batch_size].tolist()


def drop_page_cache(path: Path) -> None:
    """Evict this file's pages (only this file: other processes are not disturbed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def source_range(view: Any, kind: str) -> tuple[int, int]:
    """Rows of the source dataset that the training split's batches touch."""
    rows = split_rows(view, "train")
    if kind == "head":
        return int(rows.min()), int(rows.max()) + 1
    ids = np.concatenate([view.left_index[rows], view.right_index[rows]])
    return int(ids.min()), int(ids.max()) + 1


def raw_read(
    path: Path, kind: str, lo: int, hi: int, repeats: int, cold: bool
) -> tuple[float, int]:
    """Best time of a plain contiguous read of rows ``[lo, hi)`` in 8 MiB slices, and bytes."""
    best, nbytes = float("inf"), 0
    for _ in range(repeats):
        if cold:
            drop_page_cache(path)
        with h5py.File(path, "r") as f:
            ds = f[SOURCE[kind]]
            layer_major = kind == "embedding"
            row_bytes = ds.dtype.itemsize * int(np.prod(ds.shape[1:]))  # all layers of a row
            if layer_major:
                row_bytes = ds.dtype.itemsize * ds.shape[0] * int(np.prod(ds.shape[2:]))
            step = max(1, (8 * MIB) // row_bytes)
            started = time.perf_counter()
            nbytes = 0
            for a in range(lo, hi, step):
                b = min(hi, a + step)
                nbytes += (ds[:, a:b] if layer_major else ds[a:b]).nbytes
            best = min(best, time.perf_counter() - started)
    return best, nbytes


def make_loader(path: Path, kind: str, shuffle: str, workers: int) -> DataLoader:
    view = relation_views(path, [kind])[kind]
    dm = CacheProbeDataModule(view, batch_size=256, mode="stream", num_workers=workers)
    if shuffle == "blocks":
        return dm.train_dataloader()
    ds = dm.datasets["train"]
    sampler: Sampler[list[int]] = (
        BlockBatchSampler(len(ds), 256, shuffle=False)
        if shuffle == "sequential"
        else RandomBatchSampler(len(ds), 256)
    )
    return DataLoader(
        ds,
        batch_sampler=sampler,
        collate_fn=_whole_batch,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def epoch_time(
    path: Path, loader: DataLoader, epochs: int, cold: bool, max_batches: int | None
) -> tuple[float, int, int]:
    """Best epoch time (epoch 0 warms up workers and the file handle), bytes, batches run."""
    best, delivered, ran = float("inf"), 0, 0
    for epoch in range(epochs + 1):
        if cold:
            drop_page_cache(path)
        started = time.perf_counter()
        delivered, ran = 0, 0
        for batch in loader:
            delivered += batch["x"].numpy().nbytes
            ran += 1
            if max_batches and ran >= max_batches:
                break
        if epoch:
            best = min(best, time.perf_counter() - started)
    return best, delivered, ran


def measure(
    path: Path,
    kind: str,
    sweep: str,
    setting: str,
    args: argparse.Namespace,
    cold: bool = False,
    shuffle: str = "blocks",
    workers: int = 0,
    max_batches: int | None = None,
) -> dict[str, Any]:
    view = relation_views(path, [kind])[kind]
    lo, hi = source_range(view, kind)
    raw_s, raw_bytes = raw_read(path, kind, lo, hi, args.epochs, cold)
    loader = make_loader(path, kind, shuffle, workers)
    took, delivered, ran = epoch_time(path, loader, args.epochs, cold, max_batches)
    scale = len(loader) / ran  # only fully random batches are cut short, then extrapolated
    del loader
    epoch_s = took * scale
    feature_ratio = delivered / took / (raw_bytes / raw_s)
    return {
        "view": kind,
        "sweep": sweep,
        "setting": setting,
        "page_cache": "cold" if cold else "warm",
        "raw_MBps": raw_bytes / raw_s / 1e6,
        "feature_MBps": delivered / took / 1e6,
        "epoch_s": epoch_s,
        "feature_ratio": feature_ratio,
        "source_ratio": raw_s / epoch_s,
        "met": feature_ratio >= TARGET,
        "note": f"{ran} of {ran * scale:.0f} batches, extrapolated" if scale > 1 else "",
    }


def train_epochs(path: Path, workers: int, epochs: int, args: argparse.Namespace) -> dict:
    """A fused 13-layer training run in stream mode: workers can overlap reads with compute."""
    cfg = compose_cfg(
        [
            f"trainer.max_epochs={epochs}",
            "loader.mode=stream",
            f"loader.num_workers={workers}",
            "~callbacks",
        ],
        args.workdir / "runs",
    )
    view = relation_views(path, ["embedding"])["embedding"]
    rows = split_rows(view, "train")
    x_bytes = rows.size * len(view.probe_names) * view.left.read(0, 1).shape[-1] * 2 * 2
    with timed() as t:
        build_engine(cfg, []).train_view(view, "identification/embedding")
    return {
        "view": "embedding",
        "sweep": "train run",
        "setting": f"{workers} worker(s), {epochs} epochs",
        "page_cache": "warm",
        "feature_MBps": x_bytes * epochs / t.wall / 1e6,
        "epoch_s": t.wall / epochs,
        "note": "whole fit + test, incl. set-up",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs (best is kept)")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (1 if args.quick else 2)
    quiet()
    set_threads(args.threads)
    spec = spec_from(args)
    path = ensure_cache(args.workdir, spec)
    default = f"{TARGET_CHUNK_BYTES // KIB} KiB chunks (default)"
    rows: list[dict[str, Any]] = []
    for cold in (False, True):
        for kind in ("embedding", "head"):
            rows.append(measure(path, kind, "defaults", default, args, cold=cold))

    row_bytes = spec.hidden_size * 2  # chunks hold one layer's float16 rows
    chunk_sizes = [64 * KIB, 256 * KIB, 1 * MIB, 4 * MIB] if not args.quick else [4 * KIB]
    for chunk_bytes in chunk_sizes:
        if chunk_bytes == TARGET_CHUNK_BYTES:
            continue
        chunk_rows = max(1, chunk_bytes // row_bytes)
        copy = rechunked_copy(path, args.workdir / f"{path.stem}_chunk{chunk_rows}.h5", chunk_rows)
        setting = f"{chunk_bytes // KIB} KiB chunks ({chunk_rows} rows)"
        for cold in (False, True):
            rows.append(measure(copy, "embedding", "chunk", setting, args, cold=cold))

    try:
        for cache_bytes in [1 * MIB, 256 * MIB] if not args.quick else [1 * MIB]:
            cache_reader.READ_CACHE_BYTES = cache_bytes
            setting = f"rdcc_nbytes {cache_bytes // MIB} MiB"
            rows.append(measure(path, "embedding", "chunk cache", setting, args))
    finally:
        cache_reader.READ_CACHE_BYTES = READ_CACHE_BYTES

    for shuffle in ("sequential", "random"):
        cap = 4 if shuffle == "random" else None
        rows.append(
            measure(path, "embedding", "shuffle", shuffle, args, shuffle=shuffle, max_batches=cap)
        )
    for workers in (1, 2) if not args.quick else (1,):
        for kind in ("embedding", "head"):
            rows.append(measure(path, kind, "workers", str(workers), args, workers=workers))
    for workers in (0, 1, 2) if not args.quick else (0,):
        rows.append(train_epochs(path, workers, 1 if args.quick else 3, args))

    print_table(
        f"stream loader vs raw h5py ({spec.num_pairs} pairs, training split, batch 256)", rows
    )
    return finish(args, "loader_throughput", {"rows": rows, "spec": spec.__dict__})


if __name__ == "__main__":
    main()
