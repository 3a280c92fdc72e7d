"""A task on a multi-stream cache (LXMERT): run once per stream that holds what it reads.

Each stream of the cache is read as a cache of its own (``CacheReader.stream_reader``). A
stream lacking a modality the task needs (``task.modalities``) is skipped with one line saying
why, unless the run asked for it by name (``model.stream=vision``): then it is an error. Rows
carry their ``stream``; figures, files and summary keys are per stream. A task's baseline
model (one sequence) is probed once, beside the first stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from probes.engine import ProbeEngine
from probes.tasks.base import Task, TaskInputs, TaskOutput
from vlprobe.cache.reader import CacheReader

log = logging.getLogger(__name__)


def cache_streams(inputs: TaskInputs) -> list[str]:
    """The streams of the run's model caches, in order (empty: one-sequence caches)."""
    found: dict[str, None] = {}
    for reader in inputs.readers["model"].values():
        found.update(dict.fromkeys(reader.streams))
    return list(found)


def sequence_readers(inputs: TaskInputs) -> list[CacheReader]:
    """Every token sequence the task may read: each stream of a multi-stream cache, or the
    cache itself (for checks that read examples: leakage, splits, layers)."""
    out = []
    for by_dataset in inputs.readers.values():
        for reader in by_dataset.values():
            streams = reader.streams
            out += [reader.stream_reader(s) for s in streams] if streams else [reader]
    return out


def skip_reason(task: Task, inputs: TaskInputs, stream: str) -> str | None:
    """Why ``task`` cannot read ``stream`` (None: it can)."""
    needs = task.modalities
    for dataset, reader in inputs.readers["model"].items():
        if stream not in reader.streams:
            return f"{dataset} has no {stream} stream (it holds {', '.join(reader.streams)})"
        held = reader.stream_reader(stream)
        try:
            modalities = list(held.attr("modalities"))  # type: ignore[arg-type]
        finally:
            held.close()
        lacking = [m for m in needs if m not in modalities]
        if lacking:
            return (
                f"{task.name} reads {' and '.join(needs)} tokens; the {stream} stream holds "
                f"{' and '.join(modalities)} only"
            )
    return None


def usable_streams(
    task: Task, inputs: TaskInputs, asked: bool, report: Callable[[str], Any] = log.info
) -> list[str]:
    """The streams ``task`` runs on; each other one is reported (``asked``: refused)."""
    streams = cache_streams(inputs)
    usable = []
    for stream in streams:
        reason = skip_reason(task, inputs, stream)
        if reason is None:
            usable.append(stream)
        elif asked:
            raise ValueError(f"model.stream={stream}: {reason}; choose another stream")
        else:
            report(f"stream {stream} skipped: {reason}")
    if not usable:
        raise ValueError(f"{task.name}: no stream of the cache holds what it reads ({streams})")
    return usable


def stream_inputs(inputs: TaskInputs, stream: str, baseline: bool) -> TaskInputs:
    """``inputs`` with the run's model read at ``stream`` (and the baseline if ``baseline``)."""
    readers: dict[str, dict[str, CacheReader]] = {
        "model": {d: r.stream_reader(stream) for d, r in inputs.readers["model"].items()}
    }
    if baseline:
        readers.update({role: rs for role, rs in inputs.readers.items() if role != "model"})
    labels = {**inputs.labels, "model": f"{inputs.labels.get('model', 'model')}/{stream}"}
    return TaskInputs(readers, labels)


def execute(task: Task, inputs: TaskInputs, engine: ProbeEngine, out_dir: Path) -> TaskOutput:
    """``task.execute`` on one-sequence caches, or once per stream of ``inputs.streams`` (the
    usable streams of multi-stream ones, checked by prepare)."""
    if not inputs.streams:
        return task.execute(inputs, engine, out_dir)
    outputs = []
    for k, stream in enumerate(inputs.streams):
        part = stream_inputs(inputs, stream, baseline=k == 0)
        try:
            outputs.append((stream, task.execute(part, engine, out_dir / stream)))
        finally:
            for reader in part.readers["model"].values():
                reader.close()
    return merge(outputs)


def merge(outputs: list[tuple[str, TaskOutput]]) -> TaskOutput:
    """One output: rows tagged with their stream (not the baseline's), keys prefixed by it."""
    rows: list[dict[str, Any]] = []
    console: list[dict[str, Any]] = []
    figures: dict[str, Path] = {}
    summary: dict[str, Any] = {}
    for stream, out in outputs:
        tagged = {id(r): _tag(r, stream) for r in out.rows}
        rows += tagged.values()
        shown = out.console_rows if out.console_rows is not None else out.rows
        console += [tagged.get(id(r), _tag(r, stream)) for r in shown]
        figures.update({f"{stream}/{k}": p for k, p in out.figures.items()})
        summary.update({f"{stream}/{k}": v for k, v in out.summary.items()})
    columns = outputs[0][1].columns
    return replace(
        outputs[0][1],
        rows=rows,
        columns=["stream", *(c for c in columns if c != "stream")],
        figures=figures,
        summary=summary,
        console_rows=console,
    )


def _tag(row: dict[str, Any], stream: str) -> dict[str, Any]:
    """The row with its ``stream`` field set (rows stamp it None when their reader was
    opened without one); a baseline's rows keep theirs."""
    if row.get("role") == "baseline":
        return row
    tagged = {"stream": stream, **row}
    if tagged["stream"] is None:
        tagged["stream"] = stream
    return tagged
