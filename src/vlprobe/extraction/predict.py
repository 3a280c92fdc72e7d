"""Extraction as a Lightning predict stage: one process per device, on N devices and M nodes.

The frozen adapter runs in a LightningModule's ``predict_step``; a prediction writer reduces
each batch to units and appends it to a shard file. Examples are sorted once (split, group,
id) and cut into contiguous shards; each rank takes its share of the shards still to do and
writes each one under a partial name, published when complete (``CacheWriter``). A rerun
after a kill therefore redoes only the shards never published. Rank 0 then merges the shards
into one cache equal, dataset by dataset, to a one-process extraction (``cache/shards.py``).
Reducing and writing run in a thread behind a bounded queue, overlapping the next forward.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from vlprobe.cache.schema import PARTS, expand_parts
from vlprobe.cache.shards import ShardPlan, merge_shards
from vlprobe.cache.writer import CacheWriter
from vlprobe.data.examples import VLExample
from vlprobe.extraction.extract import (
    build_label_vocab,
    cache_meta,
    sort_for_cache,
    stream_attrs,
)
from vlprobe.extraction.units import LabelVocab, reduce_example, restrict_to
from vlprobe.hashing import text_sha256
from vlprobe.models.base import Adapter, EncodedExample

log = logging.getLogger(__name__)
# what the adapter returns per input: one sequence, or one per stream (multi-stream models)
Encoded = EncodedExample | dict[str, EncodedExample]


class _WriterThread(threading.Thread):
    """Consumes (examples, encodings, keep-map flags); re-raises its error in the caller."""

    def __init__(self, writer: CacheWriter, labels: LabelVocab) -> None:
        super().__init__(daemon=True)
        self.writer, self.labels = writer, labels
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue
            try:
                for example, encoded, keep in zip(*item, strict=True):
                    by_stream = encoded if isinstance(encoded, dict) else {None: encoded}
                    for stream, enc in by_stream.items():
                        rec = reduce_example(restrict_to(example, enc), enc, self.labels, keep)
                        self.writer.add(rec, stream)
                self.writer.flush()
            except BaseException as err:  # noqa: BLE001 - handed to the main thread
                self.error = err

    def put(self, examples: list[VLExample], encoded: list[Encoded], keep: list[bool]):
        if self.error is not None:
            raise self.error
        self.queue.put((examples, encoded, keep))

    def finish(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def attention_map_positions(ordered: Sequence[VLExample], max_maps: int) -> set[int]:
    """Positions of the first ``max_maps`` test examples: their full maps are kept (figures)."""
    tests = [i for i, ex in enumerate(ordered) if ex.split == "test"]
    return set(tests[:max_maps])


class _Batches(Dataset):
    """Batches of example positions, each within one shard (a loader item is a whole batch)."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list[int]:
        return self.batches[index]


class ExtractionModule(pl.LightningModule):
    """The frozen adapter as a LightningModule; ``predict_step`` encodes a batch of positions.

    The strategy moves ``model`` to the rank's device and the precision plugin autocasts
    (``bf16-mixed``), so the adapter follows both instead of its own device and autocast.
    """

    def __init__(
        self,
        adapter: Adapter,
        examples: Sequence[VLExample],
        plan: ShardPlan,
        batch_size: int,
    ) -> None:
        super().__init__()
        self.adapter, self.examples, self.plan, self.batch_size = (
            adapter,
            examples,
            plan,
            batch_size,
        )
        self.model = adapter.model  # registered, so the strategy places it

    def predict_dataloader(self) -> DataLoader:
        """This rank's share of the unfinished shards (decided on rank 0, broadcast)."""
        pending = self.trainer.strategy.broadcast(self.plan.pending(), src=0)
        mine = pending[self.global_rank :: self.trainer.world_size]
        batches = [
            list(range(start, min(start + self.batch_size, hi)))
            for lo, hi in (self.plan.bounds[s] for s in mine)
            for start in range(lo, hi, self.batch_size)
        ]
        # batch_size=None: each item already is a batch (positions within one shard)
        return DataLoader(_Batches(batches), batch_size=None, shuffle=False)

    def on_predict_start(self) -> None:
        self.adapter.device = self.device
        self.adapter.autocast_dtype = None

    def predict_step(self, batch: list[int], batch_idx: int) -> list[Encoded]:
        inputs = [self.examples[i].inputs for i in batch]
        if self.adapter.streams:  # one forward pass, every cached stream
            return self.adapter.encode_streams(inputs)  # type: ignore[attr-defined]
        return self.adapter.encode(inputs)


class ShardWriter(BasePredictionWriter):
    """Appends each predicted batch to its shard's ``CacheWriter``; publishes finished shards."""

    def __init__(
        self,
        plan: ShardPlan,
        examples: Sequence[VLExample],
        labels: LabelVocab,
        meta: Mapping[str, Any],
        dtype: str,
        keep_maps: set[int],
        parts: frozenset[str],
        streams: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.plan, self.examples, self.labels, self.meta = plan, examples, labels, meta
        self.dtype, self.keep_maps, self.parts = dtype, keep_maps, parts
        self.streams = streams  # stream -> its attributes (a multi-stream adapter)
        self._shard: int | None = None
        self._writer: CacheWriter | None = None
        self._worker: _WriterThread | None = None
        self.written = 0  # examples this rank encoded, and since when (its throughput)
        self.started: float | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()  # after the processes started and joined

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: list[Encoded],
        batch_indices: Sequence[int] | None,
        batch: list[int],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        shard = self.plan.shard_of(batch[0])
        if shard != self._shard:
            self.finish()
            self._open(shard)
        assert self._worker is not None
        examples = [self.examples[i] for i in batch]
        self._worker.put(examples, prediction, [i in self.keep_maps for i in batch])
        self.written += len(batch)
        if batch[-1] + 1 == self.plan.bounds[shard][1]:
            self.finish()  # the shard's last batch: publish it now, a kill later keeps it

    def _open(self, shard: int) -> None:
        attrs = {**self.meta, **self.plan.shard_attrs(shard)}
        self._writer = CacheWriter(
            self.plan.path(shard),
            attrs,
            self.labels,
            dtype=self.dtype,
            parts=self.parts,
            streams=self.streams,
        )
        self._worker = _WriterThread(self._writer, self.labels)
        self._worker.start()
        self._shard = shard

    def finish(self) -> None:
        """Publish the shard being written (all its batches have been queued)."""
        if self._writer is None or self._worker is None:
            return
        writer, worker = self._writer, self._worker
        self._writer = self._worker = self._shard = None
        try:
            worker.finish()
        except BaseException:
            writer.abort()
            raise
        if not self.plan.single:  # the merge offsets row numbers by these
            assert writer.file is not None
            writer.file.attrs["shard_counts"] = json.dumps(writer.counts)
        writer.close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Drop the shard being written; published shards stay for the rerun."""
        if self._writer is None or self._worker is None:
            return
        self._worker.queue.put(None)
        self._worker.join()
        self._writer.abort()
        self._writer = self._worker = self._shard = None


def shard_fingerprint(meta: Mapping[str, Any], labels: LabelVocab, dtype: str) -> str:
    """What a shard's content depends on besides its examples (their ids are added per shard)."""
    blob = json.dumps({"meta": meta, "labels": labels.as_dict(), "dtype": dtype}, default=str)
    return text_sha256(blob)


def extract(
    examples: Sequence[VLExample],
    adapter: Adapter,
    out_path: str | Path,
    attrs: dict[str, object],
    batch_size: int = 16,
    dtype: str = "float16",
    max_attention_maps: int = 8,
    progress: bool = True,
    trainer: Mapping[str, Any] | None = None,
    shards: int | None = None,
    parts: Iterable[str] | None = None,
) -> Path:
    """Encode every example on ``trainer`` (Lightning Trainer settings) and write the cache.

    ``trainer`` defaults to one CPU process; ``devices``, ``num_nodes``, ``strategy`` and
    ``precision`` are Lightning's. ``shards``: contiguous runs of whole batches, written and
    resumed independently (``None``: one per process). ``parts``: the optional cache parts
    to write (None: every part; ``cache.schema.PARTS``). Every rank returns the cache path
    once rank 0 has published it.
    """
    if not examples:
        raise ValueError("no examples to extract: check the data paths and split lists")
    out_path = Path(out_path)
    ordered = sort_for_cache(examples)
    labels = build_label_vocab(ordered)
    meta = cache_meta(adapter, attrs)
    streams = stream_attrs(adapter, ordered) if adapter.streams else None
    settings = {"accelerator": "cpu", "devices": 1, **(trainer or {})}
    runner = pl.Trainer(
        **settings,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        use_distributed_sampler=False,
        callbacks=[],
    )
    num_shards = shards or runner.num_nodes * runner.num_devices
    plan = ShardPlan.for_cache(
        out_path,
        ordered,
        num_shards,
        shard_fingerprint({**meta, "streams": streams}, labels, dtype),
        batch_size,
    )
    parts = expand_parts(PARTS if parts is None else parts)
    maps = attention_map_positions(ordered, max_attention_maps if "maps" in parts else 0)
    writer = ShardWriter(plan, ordered, labels, meta, dtype, maps, parts, streams)
    runner.callbacks.append(writer)
    module = ExtractionModule(adapter, ordered, plan, batch_size)
    with warnings.catch_warnings():  # the writer needs no batch indices: each batch carries its
        warnings.filterwarnings("ignore", "Couldn't infer the batch indices")  # own positions
        runner.predict(module, return_predictions=False)
    writer.finish()
    seconds = time.perf_counter() - (writer.started or time.perf_counter())
    log.info(
        "rank %d: %d examples in %.1f s (%.1f examples/s)",
        runner.global_rank,
        writer.written,
        seconds,
        writer.written / max(seconds, 1e-9),
    )
    runner.strategy.barrier("extraction shards written")
    if runner.is_global_zero:
        merge_shards(plan)
    runner.strategy.barrier("extraction cache merged")
    return out_path
