"""Is a cache whole? A cheap structural check (every open) and a full one (`vlprobe verify`).

The structural check reads shapes and two offsets only: every group of datasets all there or
absent, lengths that agree with the offsets, layer and head axes that agree with the
attributes. The full check also reads every byte (each chunk's Fletcher-32 checksum, when the
writer stored one) and checks the index arrays' values, so a cache damaged on disk, or edited
by hand, is named before a run trains on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from vlprobe.cache.schema import (
    CORE_GROUPS,
    GROUPS,
    HEAD_DATASETS,
    HIDDEN_DATASETS,
    SCHEMA_VERSION,
    stream_group,
)

_READ_ROWS = 1 << 16  # full check: rows per read, bounds memory on large caches


def _rows(f: h5py.File, name: str, axis: int) -> int:
    return int(f[name].shape[axis])


def table_groups(f: h5py.File) -> dict[str, h5py.Group | None]:
    """Each token sequence's group by its name in messages: the file, or every stream's."""
    listed = f.attrs.get("streams")
    if listed is None:
        return {"": f}
    return {f"{stream_group(name)}/": f.get(stream_group(name)) for name in json.loads(listed)}


def shard_problem(f: h5py.File) -> str:
    """What a shard is (``shard_index`` set): a part of the examples, never a cache to read."""
    index, count = int(f.attrs["shard_index"]), int(f.attrs.get("shard_count", 0))
    return (
        f"shard {index + 1} of {count} of a cache still being extracted (its examples only), "
        "not a cache: run the extraction again, which resumes its shards and merges them"
    )


def structure_problems(f: h5py.File) -> list[str]:
    """What is missing or inconsistent, by shapes alone (empty list: consistent).
    Datasets are named by their path in the file (``streams/vision/...`` in a stream)."""
    problems: list[str] = []
    groups = table_groups(f)
    for prefix, group in groups.items():
        if group is None:
            problems.append(f"group {prefix.rstrip('/')} is missing (a listed stream)")
            continue
        problems += _table_problems(group, prefix)
    if not problems and len(groups) > 1:
        problems += _stream_problems({p: g for p, g in groups.items() if g is not None})
    return problems


def _stream_problems(groups: dict[str, h5py.Group]) -> list[str]:
    """Every stream holds the same examples, and the full attention maps of the same ones."""
    rows = {prefix.rstrip("/"): int(g["examples/id"].shape[0]) for prefix, g in groups.items()}
    if len(set(rows.values())) > 1:
        return [f"the streams hold different numbers of examples: {rows}"]
    maps = {
        prefix: set(g["attention/maps"]) if "attention/maps" in g else set()
        for prefix, g in groups.items()
    }
    every = set().union(*maps.values())
    return [
        f"{prefix}attention/maps lacks the maps of examples "
        f"{sorted(int(e) for e in every - held)}, which another stream holds"
        for prefix, held in maps.items()
        if every - held
    ]


def _table_problems(f: h5py.Group, prefix: str) -> list[str]:
    """:func:`structure_problems` of one token sequence (a file, or the stream's group at
    ``prefix``)."""
    problems: list[str] = []
    present: dict[str, int] = {}
    listed = json.loads(f.attrs.get("parts", "[]"))  # parts the writer says it wrote
    for group, members in GROUPS.items():
        have = [name for name in members if name in f]
        if group in CORE_GROUPS or group in listed or have:
            missing = [name for name in members if name not in f]
            if missing:
                problems.append(f"dataset {prefix}{missing[0]} is missing ({group} group)")
                continue
            lengths = {prefix + name: _rows(f, name, axis) for name, axis in members.items()}
            if len(set(lengths.values())) > 1:
                problems.append(f"the {group} datasets disagree in length: {lengths}")
                continue
            present[group] = next(iter(lengths.values()))
    if problems:
        return problems
    problems += _offset_problems(f, present, prefix)
    problems += _axis_problems(f, prefix)
    return problems


def _offset_problems(f: h5py.Group, present: dict[str, int], prefix: str) -> list[str]:
    problems = []
    n_examples = present["examples"]
    if "examples/token_offset" not in f:
        return [f"dataset {prefix}examples/token_offset is missing (examples group)"]
    offsets = f["examples/token_offset"]
    if offsets.shape[0] != n_examples + 1:
        problems.append(
            f"{prefix}examples/token_offset has {offsets.shape[0]} rows for {n_examples} examples"
        )
    else:
        for group in ("tokens", "token_states"):
            if group in present and int(offsets[-1]) != present[group]:
                problems.append(
                    f"{prefix}examples/token_offset ends at {int(offsets[-1])}, {group} has "
                    f"{present[group]} tokens"
                )
    if "phrase" in present:
        if "units/phrase/pair_offset" not in f:
            problems.append(f"dataset {prefix}units/phrase/pair_offset is missing (phrase group)")
        else:
            pair_offset = f["units/phrase/pair_offset"]
            if pair_offset.shape[0] != present["phrase"] + 1:
                problems.append(
                    f"{prefix}units/phrase/pair_offset has {pair_offset.shape[0]} rows for "
                    f"{present['phrase']} phrases"
                )
            elif "coref" in present and int(pair_offset[-1]) != present["coref"]:
                problems.append(
                    f"{prefix}units/phrase/pair_offset ends at {int(pair_offset[-1])}, "
                    f"pairs/coref has {present['coref']} pairs"
                )
    return problems


def _axis_problems(f: h5py.Group, prefix: str) -> list[str]:
    problems = []
    layers, heads = int(f.attrs.get("num_layers", -1)), int(f.attrs.get("num_heads", -1))
    for name in HIDDEN_DATASETS:
        if name in f and f[name].shape[0] != layers + 1:
            problems.append(
                f"{prefix}{name} has {f[name].shape[0]} hidden layers, attrs say {layers + 1}"
            )
    for name in HEAD_DATASETS:
        if name in f and tuple(f[name].shape[1:3]) != (layers, heads):
            problems.append(
                f"{prefix}{name} has (layers, heads) {tuple(f[name].shape[1:3])}, attrs say "
                f"{(layers, heads)}"
            )
    return problems


def _nan_by_design(group: h5py.Group, name: str) -> bool:
    """The [CLS] mass of a sequence without text tokens (LXMERT's vision stream) is NaN."""
    modalities = json.loads(group.attrs.get("modalities", '["text"]'))
    return name == "attention/cls_mass" and "text" not in modalities


def _read_all(ds: h5py.Dataset, name: str, nan_ok: bool = False) -> np.ndarray | None:
    """Read every chunk (checksums are checked on read); small index arrays are returned.
    ``name``: the dataset's path within its token sequence's group."""
    axis = 1 if name in HIDDEN_DATASETS else 0
    total = ds.shape[axis] if ds.ndim else 0
    for lo in range(0, max(total, 1), _READ_ROWS):
        index = (slice(None),) * axis + (slice(lo, lo + _READ_ROWS),)
        block = ds[index] if ds.ndim else ds[()]
        if nan_ok:
            block = np.nan_to_num(block, nan=0.0, posinf=np.inf, neginf=-np.inf)
        if np.issubdtype(ds.dtype, np.floating) and not np.isfinite(block).all():
            raise ValueError(f"{name} holds non-finite values")
    return ds[()] if ds.ndim == 1 and ds.dtype.kind in "iu" else None


def _value_problems(f: h5py.File, index: dict[str, np.ndarray]) -> list[str]:
    problems = []
    n_examples = int(f["examples/split"].shape[0])
    split = index["examples/split"]
    if ((split < 0) | (split > 2)).any():
        problems.append("examples/split holds values other than 0, 1, 2")
    offsets = index["examples/token_offset"]
    counts = index["examples/n_text"].astype(np.int64) + index["examples/n_image"]
    if offsets[0] != 0 or not np.array_equal(np.diff(offsets), counts):
        problems.append("examples/token_offset disagrees with examples/n_text + n_image")
    for unit in ("region", "phrase", "sentence"):
        owner = index.get(f"units/{unit}/example")
        if owner is not None and owner.size and (owner.min() < 0 or owner.max() >= n_examples):
            problems.append(f"units/{unit}/example points outside the {n_examples} examples")
    for pairs, field, unit in (
        ("relation", "subject", "region"),
        ("relation", "object", "region"),
        ("coref", "phrase", "phrase"),
        ("coref", "region", "region"),
    ):
        ids = index.get(f"pairs/{pairs}/{field}")
        owner = index.get(f"units/{unit}/example")
        if ids is not None and ids.size and (owner is None or ids.max() >= owner.size):
            problems.append(f"pairs/{pairs}/{field} points outside units/{unit}")
    return problems


def verify_cache(path: str | Path) -> list[str]:
    """Every problem of the cache at ``path`` (empty list: it is whole), reading all of it."""
    path = Path(path)
    if not path.exists():
        return [f"no file at {path}"]
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        return [f"not a readable HDF5 file (truncated or corrupted): {err}"]
    with f:
        if int(f.attrs.get("complete", 0)) != 1:
            return ["no 'complete' flag: its extraction did not finish"]
        if int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
            return [f"cache schema {f.attrs.get('schema_version')}, expected {SCHEMA_VERSION}"]
        if "shard_index" in f.attrs:
            return [shard_problem(f)]
        problems = structure_problems(f)
        if problems:
            return problems
        for prefix, group in table_groups(f).items():
            assert group is not None  # structure_problems names a missing stream
            problems += _full_problems(group, prefix)
    return problems


def _full_problems(group: h5py.Group, prefix: str) -> list[str]:
    """Read every dataset of one token sequence's group, then check its index values."""
    problems: list[str] = []
    index: dict[str, np.ndarray] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            try:
                values = _read_all(obj, name, _nan_by_design(group, name))
            except (OSError, ValueError) as err:
                problems.append(f"{prefix}{name}: cannot be read back ({err})")
                return
            if values is not None:
                index[name] = values

    group.visititems(visit)
    if not problems:
        problems += [f"{prefix}{p}" for p in _value_problems(group, index)]
    return problems
