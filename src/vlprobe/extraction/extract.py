"""Run a frozen model once over a data set and write the activation cache.

The model runs in the main thread; reducing outputs to units and writing HDF5 happens in a
writer thread behind a bounded queue, so disk writes overlap the next forward pass.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from vlprobe.cache.records import LabelVocab
from vlprobe.cache.schema import SPLIT_IDS
from vlprobe.cache.writer import CacheWriter
from vlprobe.data.examples import VLExample
from vlprobe.extraction.units import reduce_example
from vlprobe.models.base import Adapter, EncodedExample


def build_label_vocab(examples: Sequence[VLExample]) -> LabelVocab:
    """Fix label ids before extraction: predicates by frequency, then name."""
    predicates = Counter(
        rel.predicate for ex in examples for rel in ex.relations if rel.predicate is not None
    )
    return LabelVocab(
        category=sorted({r.category for ex in examples for r in ex.regions}),
        predicate=[p for p, _ in sorted(predicates.items(), key=lambda kv: (-kv[1], kv[0]))],
        sentence=sorted({ex.label for ex in examples if ex.label is not None}),
    )


def content_hash(paths: Iterable[Path]) -> str:
    """sha256 over the bytes of every file under ``paths`` (sorted), for provenance."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.name).encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _provenance_attrs(provenance: dict[str, str]) -> dict[str, str]:
    """Adapter provenance under the cache's ``model_*`` attribute names."""
    renamed = {"config_sha256": "model_config_hash", "name_or_path": "model_path"}
    return {
        renamed.get(k, k if k.startswith("model_") else f"model_{k}"): v
        for k, v in provenance.items()
    }


def sort_for_cache(examples: Sequence[VLExample]) -> list[VLExample]:
    """Split, then group, then id: each split's units and pairs are contiguous in the cache."""
    return sorted(examples, key=lambda ex: (SPLIT_IDS[ex.split], ex.group_id, ex.example_id))


class _WriterThread(threading.Thread):
    """Consumes (examples, encodings) batches; re-raises its error in the main thread."""

    def __init__(self, writer: CacheWriter, labels: LabelVocab, max_maps: int) -> None:
        super().__init__(daemon=True)
        self.writer, self.labels, self.max_maps = writer, labels, max_maps
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.maps_kept = 0

    def run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue
            try:
                for example, encoded in zip(*item, strict=True):
                    # full maps (figures) for the first few held-out examples only
                    keep = example.split == "test" and self.maps_kept < self.max_maps
                    self.writer.add(reduce_example(example, encoded, self.labels, keep_map=keep))
                    self.maps_kept += keep
                self.writer.flush()
            except BaseException as err:  # noqa: BLE001 - handed to the main thread
                self.error = err

    def put(self, examples: list[VLExample], encoded: list[EncodedExample]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((examples, encoded))

    def finish(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def extract(
    examples: Sequence[VLExample],
    adapter: Adapter,
    out_path: str | Path,
    attrs: dict[str, object],
    batch_size: int = 16,
    dtype: str = "float16",
    max_attention_maps: int = 8,
    progress: bool = True,
    parts: Iterable[str] | None = None,
) -> Path:
    """Encode every example and write the cache at ``out_path`` (atomically), with the
    optional ``parts`` only (None: every part; see ``cache.schema.PARTS``)."""
    if not examples:
        raise ValueError("no examples to extract: check the data paths and split lists")
    ordered = sort_for_cache(examples)
    labels = build_label_vocab(ordered)
    meta = {
        "model_name": adapter.name,
        "model_kind": getattr(adapter, "model_kind", "single-stream"),
        "num_layers": adapter.num_layers,
        "num_heads": adapter.num_heads,
        "hidden_size": adapter.hidden_size,
        "layer_names": adapter.layer_names,
        **_provenance_attrs(adapter.provenance()),
        **attrs,
    }
    with CacheWriter(out_path, meta, labels, dtype=dtype, parts=parts) as writer:
        maps = max_attention_maps if "maps" in writer.parts else 0
        worker = _WriterThread(writer, labels, maps)
        worker.start()
        try:
            bar = tqdm(total=len(ordered), desc="extract", unit="ex", disable=not progress)
            for start in range(0, len(ordered), batch_size):
                batch = list(ordered[start : start + batch_size])
                worker.put(batch, adapter.encode([ex.inputs for ex in batch]))
                bar.update(len(batch))
            bar.close()
        finally:
            worker.finish()
    return Path(out_path)
