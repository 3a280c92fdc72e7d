"""A run's ``results.json``: its rows under a header saying whether the run finished.

Written last (after results.csv, figures and the W&B finish), atomically (a temporary file,
then ``os.replace``): a killed run leaves the previous file or none, never half of one, and a
run that failed after its probes trained says ``status: failed`` and why, so ``vlprobe
report`` never takes it for a finished run. ``data`` says whose numbers they are: the
synthetic ``demo`` set or ``real`` data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlprobe.reporting.table import _plain

FINISHED, FAILED = "finished", "failed"


@dataclass(frozen=True)
class RunResults:
    """What a results.json holds (an old one, a bare list of rows, reads as finished)."""

    rows: list[dict[str, Any]]
    status: str = FINISHED
    error: str | None = None
    data: str | None = None
    rank: int = 0
    header: dict[str, Any] = field(default_factory=dict)


def write_run_results(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    status: str,
    data: str,
    error: str | None = None,
    rank: int = 0,
) -> Path:
    """``<out_dir>/results.json``: ``{"status", "error", "data", "rows"}``, atomically; a
    distributed run's other ranks add ``rank`` (their copy is no run of its own)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    body = {"status": status, "error": error, "data": data, **({"rank": rank} if rank else {})}
    body["rows"] = [_plain(dict(r)) for r in rows]
    tmp = out / f".results.json.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(body, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_run_results(path: str | Path) -> RunResults:
    """The rows and header of a results.json; ValueError naming the file when it is not one."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if isinstance(content, dict):
        header = {k: v for k, v in content.items() if k != "rows"}
        rows = content.get("rows")
        status = header.get("status")
    else:  # written before the header: rows only
        header, rows, status = {}, content, FINISHED
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: expected a JSON list of row objects under 'rows'")
    if status not in (FINISHED, FAILED):
        raise ValueError(f"{path}: status {status!r} is neither {FINISHED!r} nor {FAILED!r}")
    rank = int(header.get("rank", 0))
    return RunResults(rows, status, header.get("error"), header.get("data"), rank, header)
