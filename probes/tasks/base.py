"""What every task returns (so one function publishes all), and helpers the analyses share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from probes.engine import ProbeEngine
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import SPLIT_IDS

SPLITS = ("test", "val", "train", "all")


@dataclass
class TaskOutput:
    rows: list[dict[str, Any]]  # one per probe (layer / head) or per measured unit
    columns: list[str]  # the columns of the console summary, in order
    figures: dict[str, Path] = field(default_factory=dict)  # figure key -> PNG
    summary: dict[str, Any] = field(default_factory=dict)  # headline numbers for W&B summary
    console_rows: list[dict[str, Any]] | None = None  # a shorter selection for the console


@dataclass
class TaskInputs:
    """The caches a task reads, opened and checked by ``run()``'s prepare step.

    ``readers[role][dataset]``: role ``model`` is the run's model; other roles (``baseline``)
    are the extra models a task asks for. ``labels[role]``: the model's name in result rows.
    ``streams``: the streams of multi-stream caches the task runs on, chosen once by prepare
    (empty: one-sequence caches).
    """

    readers: dict[str, dict[str, CacheReader]]
    labels: dict[str, str] = field(default_factory=dict)
    streams: list[str] = field(default_factory=list)

    @property
    def reader(self) -> CacheReader:
        """The one cache of a task that reads one data set with the run's model."""
        (reader,) = self.readers["model"].values()
        return reader

    def close(self) -> None:
        for by_dataset in self.readers.values():
            for reader in by_dataset.values():
                reader.close()


class Task(Protocol):
    name: str
    # why ``data.mismatched=true`` means nothing for the task (run() refuses it); None: it works
    mismatched_refusal: ClassVar[str | None]
    # the cache parts it reads (cache.schema.PARTS): extraction writes those, a cache given by
    # path must hold them
    reads: tuple[str, ...]
    # the modalities whose tokens it reads (text, image): a stream of a multi-stream cache
    # without one of them is skipped (probes/tasks/streams.py)
    modalities: tuple[str, ...]

    def datasets(self) -> list[str]:
        """The data sets (cache kinds) it reads, e.g. ``["visual_genome"]``."""
        ...

    def execute(self, inputs: TaskInputs, engine: ProbeEngine, out_dir: Path) -> TaskOutput: ...


def examples_in_split(reader: CacheReader, split: str) -> np.ndarray:
    """Sorted example ids of ``split`` (``all``: every example)."""
    if split not in SPLITS:
        raise ValueError(f"task.split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        return np.arange(len(reader.example_split))
    return np.flatnonzero(reader.example_split == SPLIT_IDS[split])


def cache_attr(reader: CacheReader, key: str, default: str = "?") -> str:
    """A provenance attribute as text (caches written by hand may lack it)."""
    return str(reader.attr(key)) if key in reader.file.attrs else default


def attention_layer_names(reader: CacheReader) -> list[str]:
    """Names of the attention layers: attention layer ``a`` produces hidden layer ``a + 1``."""
    names = reader.layer_names
    if len(names) == reader.num_layers + 1:
        return names[1:]
    return [f"L{a + 1:02d}" for a in range(reader.num_layers)]


def select_layers(reader: CacheReader, layers: Any) -> list[int]:
    """``probing.layers`` restricted to the layers this cache has (models, and the streams of
    one model, may differ in depth; the preflight checks each exists somewhere)."""
    available = list(range(reader.num_layers + 1))
    if layers is None:
        return available
    chosen = [int(layer) for layer in layers if int(layer) in available]
    if not chosen:
        where = f"{reader.path}" + (f" (stream {reader.stream})" if reader.stream else "")
        raise ValueError(f"probing.layers={list(layers)}: {where} has layers 0-{available[-1]}")
    return chosen
