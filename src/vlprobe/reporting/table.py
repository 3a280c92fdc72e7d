"""Results as an aligned console table and as ``results.json`` / ``results.csv``.

Plain Python (no tabulate/pandas): the console summary must work in the bare runtime.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    """numpy values as JSON-native Python ones; NaN/inf as None (strict JSON has no NaN)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _cell(value: Any, floatfmt: str) -> tuple[str, bool]:
    """Text of one cell and whether it is numeric (numbers are right-aligned)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return "", False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, float):
        text = format(value, floatfmt)
        if value and text in (format(0.0, floatfmt), format(-0.0, floatfmt)):
            text = f"{value:.0e}"  # a small number (an L2 penalty of 1e-05) is not 0.000
        return text, True
    if isinstance(value, int):
        return str(value), True
    return str(value), False


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    floatfmt: str = ".3f",
    title: str | None = None,
) -> str:
    """An aligned plain-text table of ``columns`` (missing values are blank)."""
    cells = [[_cell(row.get(c), floatfmt) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i][0]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [any(r[i][1] for r in cells) for i in range(len(columns))]

    def line(texts: Sequence[str]) -> str:
        parts = [
            t.rjust(w) if num else t.ljust(w)
            for t, w, num in zip(texts, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(columns)), "  ".join("-" * w for w in widths)]
    out += [line([text for text, _ in r]) for r in cells]
    if title:
        out.insert(0, title)
    return "\n".join(out)


def write_results(
    rows: Sequence[Mapping[str, Any]], out_dir: str | Path, stem: str = "results"
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (the list of row dicts, nothing else) and ``<stem>.csv`` (header =
    union of the rows' keys in first-seen order; missing values empty)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plain = [_plain(dict(r)) for r in rows]
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(plain, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return json_path, write_csv(plain, out / f"{stem}.csv")


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """``rows`` as CSV at ``path`` (header = union of the rows' keys in first-seen order;
    missing values empty)."""
    plain = [_plain(dict(r)) for r in rows]
    header: dict[str, None] = {}
    for row in plain:
        header.update(dict.fromkeys(row))
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(header), restval="")
        writer.writeheader()
        for row in plain:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path
