"""Human-readable summary of a cache: ``vlprobe inspect CACHE``."""

from __future__ import annotations

from pathlib import Path

import h5py

from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import example_path

PROVENANCE_KEYS = (
    "schema_version",
    "vlprobe_version",
    "created_utc",
    "model_name",
    "model_revision",
    "model_kind",
    "model_config_hash",
    "model_path",
    "num_layers",
    "num_heads",
    "hidden_size",
    "layer_names",
    "dataset_kind",
    "dataset_path",
    "dataset_hash",
    "extraction_settings",
    "dropped_phrases",
    "parts",
)


def _human(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024:
            return f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TiB"


def describe(path: str | Path) -> str:
    """Schema, provenance, per-dataset sizes (total and per example) and splits."""
    reader = CacheReader(path)
    f = reader.file
    num_examples = max(1, f[example_path("split")].shape[0])
    lines = [
        f"cache: {reader.path}  ({_human(reader.path.stat().st_size)} on disk)",
        "",
        "provenance:",
    ]
    for key in PROVENANCE_KEYS:
        if key in f.attrs:
            lines.append(f"  {key}: {reader.attr(key)}")
    lines += ["", "splits (examples):"]
    lines += [f"  {name}: {count}" for name, count in reader.split_counts().items()]
    lines += ["", "labels:"]
    lines += [f"  {k}: {len(v)} names" for k, v in reader.label_names.items() if v]
    lines += [
        "",
        f"{'dataset':34s} {'shape':>24s} {'dtype':>8s} {'size':>11s} {'per example':>12s}",
    ]
    rows: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and not name.startswith("attention/maps/"):
            nbytes = obj.size * obj.dtype.itemsize
            rows.append(
                f"{name:34s} {str(obj.shape):>24s} {str(obj.dtype):>8s} {_human(nbytes):>11s} "
                f"{_human(nbytes / num_examples):>12s}"
            )

    f.visititems(visit)
    lines += rows
    if "attention/maps" in f:
        lines.append(f"attention/maps: full maps for {len(f['attention/maps'])} examples (figures)")
    reader.close()
    return "\n".join(lines)
