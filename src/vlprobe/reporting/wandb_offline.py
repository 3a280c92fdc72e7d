"""Read an offline W&B run folder (``offline-run-*/run-*.wandb``) without the W&B server.

W&B writes offline runs as a LevelDB-style log of protobuf ``Record`` s; its Python package no
longer ships a reader, so clusters without network could not inspect their runs. This reads
history rows, summary updates and the config, e.g. for tests and ``vlprobe report``.
"""

from __future__ import annotations

import json
import struct
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
    group: str = ""


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
            run.history.append(row)
            run.summary.update({k: v for k, v in row.items() if not k.startswith("_")})
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "run":
            run.group = record.run.run_group
    return run
