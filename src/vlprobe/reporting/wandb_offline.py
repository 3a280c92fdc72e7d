"""Read an offline W&B run folder (``offline-run-*/run-*.wandb``) without the W&B server.

W&B writes offline runs as a LevelDB-style log of protobuf ``Record`` s; its Python package no
longer ships a reader, so clusters without network could not inspect their runs. This reads
history rows, summary updates, the config, metric definitions (which key is whose x-axis),
artifacts and the run's name, group, tags and job type, e.g. for tests, ``vlprobe report`` and
``vlprobe dashboard``.

``wandb-core`` writes the log a whole 32 KiB block at a time and writes the last, partial block
only when it closes the run, which happens *after* ``wandb.finish()`` returns. Until the
``exit`` record is on disk the log is incomplete: ``wait_for_exit`` waits for it.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

_FILE_HEADER = 7  # b":W&B" + 2-byte magic + 1-byte version
_BLOCK = 32 * 1024
_RECORD_HEADER = 7  # crc32c (4) + length (2) + type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None  # None: no exit record (the process was killed mid-run)
    exited: bool = False  # the exit record, written last, is on disk: the log is complete
    group: str = ""
    name: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    step_metrics: dict[str, str] = field(default_factory=dict)  # key -> its x-axis key
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    top_keys: set[str] = field(default_factory=set)  # history keys before flattening

    def history_keys(self) -> set[str]:
        """Every key logged to the history, a table or an image counted once (W&B's own
        ``_step``, ``_runtime`` ... left out): what a workspace makes panels of."""
        return {k for k in self.top_keys if not k.startswith("_")}


def _records(data: bytes) -> list[bytes]:
    """Reassemble the log's (possibly split) records."""
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run log (missing ':W&B' header)")
    out, pending, pos = [], b"", _FILE_HEADER
    while pos + _RECORD_HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _RECORD_HEADER:  # block trailer padding
            pos += _BLOCK - pos % _BLOCK
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if pos + _RECORD_HEADER + length > len(data):  # a block still being written
            break
        payload = data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        pos += _RECORD_HEADER + length
        if kind == _FULL:
            out.append(payload)
        elif kind == _FIRST:
            pending = payload
        elif kind == _MIDDLE:
            pending += payload
        elif kind == _LAST:
            out.append(pending + payload)
            pending = b""
        elif kind == 0 and length == 0:  # zero padding to the block end
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
    return out


def _items(items: Any) -> dict[str, Any]:
    result = {}
    for item in items:
        key = item.key or "/".join(item.nested_key)
        result[key] = json.loads(item.value_json)
    return result


def _artifact(record: Any) -> dict[str, Any]:
    """Name, type, metadata and manifest entries (``path`` -> ``ref`` or ``local_path``)."""
    entries = {e.path: e.ref or e.local_path for e in record.manifest.contents}
    return {
        "name": record.name,
        "type": record.type,
        "metadata": json.loads(record.metadata) if record.metadata else {},
        "entries": entries,
        "manifest_file": record.manifest.manifest_file_path,
    }


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """History, summary (last logged value per key plus explicit updates), config, group."""
    run_dir = Path(run_dir)
    logs = sorted(run_dir.glob("run-*.wandb"))
    if not logs:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}: not an offline W&B run")
    run = OfflineRun(run_dir)
    for payload in _records(logs[0].read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = _items(record.history.item)
            run.top_keys.update(i.key or i.nested_key[0] for i in record.history.item)
            run.history.append(row)
            run.summary.update({k: v for k, v in row.items() if not k.startswith("_")})
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "exit":
            run.exited = True
            run.exit_code = int(record.exit.exit_code)
        elif kind == "run":
            run.group = record.run.run_group
            run.name = record.run.display_name
            run.job_type = record.run.job_type
            run.tags = list(record.run.tags)
            run.config.update(_items(record.run.config.update))  # wandb.init(config=...)
        elif kind == "metric" and record.metric.name and record.metric.step_metric:
            run.step_metrics[record.metric.name] = record.metric.step_metric
        elif kind == "artifact":
            run.artifacts.append(_artifact(record.artifact))
    return run


def wait_for_exit(run_dir: str | Path, timeout: float = 60.0) -> bool:
    """Wait until the run's exit record is on disk; False if it is not after ``timeout`` s.

    ``wandb.finish()`` returns before ``wandb-core`` has closed the log, so a run read right
    after it can lack its last block (e.g. the final summary), more often on a loaded machine.
    """
    deadline = time.monotonic() + timeout
    while not (any(Path(run_dir).glob("run-*.wandb")) and read_offline_run(run_dir).exited):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
