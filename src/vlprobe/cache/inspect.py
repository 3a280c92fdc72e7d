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
STREAM_KEYS = ("num_layers", "layer_names")  # a multi-stream cache names them per stream


def _human(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024:
            return f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TiB"


def describe(path: str | Path) -> str:
    """Schema, provenance, splits, then per-dataset sizes (total and per example) of each
    token sequence: the cache, or every stream of a multi-stream cache (LXMERT)."""
    root = CacheReader(path)
    streams = root.streams
    sequences = [root.stream_reader(s) for s in streams] or [root]
    lines = [
        f"cache: {root.path}  ({_human(root.path.stat().st_size)} on disk)",
        "",
        "provenance:",
    ]
    for key in PROVENANCE_KEYS:
        if key in root.file.attrs and not (streams and key in STREAM_KEYS):
            lines.append(f"  {key}: {root.attr(key)}")
    if streams:
        lines.append(f"  streams: {', '.join(streams)}")
    first = sequences[0]
    lines += ["", "splits (examples):"]
    lines += [f"  {name}: {count}" for name, count in first.split_counts().items()]
    lines += ["", "labels:"]
    lines += [f"  {k}: {len(v)} names" for k, v in first.label_names.items() if v]
    for reader in sequences:
        if streams:
            modalities = " and ".join(reader.attr("modalities"))  # type: ignore[arg-type]
            names = reader.layer_names
            lines += [
                "",
                f"stream {reader.stream} ({modalities} tokens): {len(names)} hidden layers "
                f"{names[0]}..{names[-1]}, {reader.num_heads} heads",
            ]
        lines += _dataset_lines(reader.file)
    for reader in sequences:
        reader.close()
    root.close()
    return "\n".join(lines)


def _dataset_lines(f: h5py.Group) -> list[str]:
    """One line per dataset of one token sequence (the file, or one stream's group)."""
    num_examples = max(1, f[example_path("split")].shape[0])
    lines = ["", f"{'dataset':34s} {'shape':>24s} {'dtype':>8s} {'size':>11s} {'per example':>12s}"]

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and not name.startswith("attention/maps/"):
            nbytes = obj.size * obj.dtype.itemsize
            lines.append(
                f"{name:34s} {str(obj.shape):>24s} {str(obj.dtype):>8s} {_human(nbytes):>11s} "
                f"{_human(nbytes / num_examples):>12s}"
            )

    f.visititems(visit)
    if "attention/maps" in f:
        lines.append(f"attention/maps: full maps for {len(f['attention/maps'])} examples (figures)")
    return lines
