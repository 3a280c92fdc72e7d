"""Is a cache whole? A cheap structural check (every open) and a full one (`vlprobe verify`).

The structural check reads shapes and two offsets only: every group of datasets all there or
absent, lengths that agree with the offsets, layer and head axes that agree with the
attributes. The full check also reads every byte (each chunk's Fletcher-32 checksum; attributes and
string datasets against their sha256 digests, ``cache/checksums.py``) and checks the index
arrays' values, so a cache damaged on disk, or edited by hand, is named before a run trains
on it. What it cannot check (digests of a cache written before they were stored) it lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from vlprobe.cache.checksums import digest_problems
from vlprobe.cache.fields import BY_PATH, FIELDS
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
    """NaN by design: a field so declared in a sequence without text tokens (the [CLS] mass
    of LXMERT's vision stream)."""
    modalities = json.loads(group.attrs.get("modalities", '["text"]'))
    return name in BY_PATH and BY_PATH[name].nan_without_text and "text" not in modalities


def _read_all(ds: h5py.Dataset, name: str, nan_ok: bool = False) -> np.ndarray | None:
    """Read every chunk (checksums are checked on read); small index arrays are returned.
    ``name``: the dataset's path within its token sequence's group."""
    axis = BY_PATH[name].axis if name in BY_PATH else 0
    total = ds.shape[axis] if ds.ndim else 0
    for lo in range(0, max(total, 1), _READ_ROWS):
        index = (slice(None),) * axis + (slice(lo, lo + _READ_ROWS),)
        block = ds[index] if ds.ndim else ds[()]
        if nan_ok:
            block = np.nan_to_num(block, nan=0.0, posinf=np.inf, neginf=-np.inf)
        if np.issubdtype(ds.dtype, np.floating) and not np.isfinite(block).all():
            raise ValueError(f"{name} holds non-finite values")
    return ds[()] if ds.ndim == 1 and ds.dtype.kind in "iu" else None


def _value_problems(f: h5py.Group, index: dict[str, np.ndarray]) -> list[str]:
    problems = []
    split = index["examples/split"]
    if ((split < 0) | (split > 2)).any():
        problems.append("examples/split holds values other than 0, 1, 2")
    offsets = index["examples/token_offset"]
    counts = index["examples/n_text"].astype(np.int64) + index["examples/n_image"]
    if offsets[0] != 0 or not np.array_equal(np.diff(offsets), counts):
        problems.append("examples/token_offset disagrees with examples/n_text + n_image")
    for decl in FIELDS:  # row numbers of another table: inside it
        ids = index.get(decl.path)
        if decl.index_into is None or ids is None or not ids.size:
            continue
        table = next(iter(GROUPS[decl.index_into]))
        rows = int(f[table].shape[GROUPS[decl.index_into][table]]) if table in f else 0
        if ids.min() < 0 or ids.max() >= rows:
            problems.append(f"{decl.path} points outside the {rows} rows of {decl.index_into}")
    return problems


@dataclass
class Verification:
    """What ``vlprobe verify`` found: ``problems`` (empty: whole) and what it could not check
    (string datasets and attributes of a cache written before their checksums were stored)."""

    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


def verify_cache(path: str | Path) -> list[str]:
    """Every problem of the cache at ``path`` (empty list: it is whole), reading all of it."""
    return verify(path).problems


def verify(path: str | Path) -> Verification:
    """:func:`verify_cache`, with what it could not check."""
    path = Path(path)
    if not path.exists():
        return Verification([f"no file at {path}"])
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        return Verification([f"not a readable HDF5 file (truncated or corrupted): {err}"])
    with f:
        if int(f.attrs.get("complete", 0)) != 1:
            return Verification(["no 'complete' flag: its extraction did not finish"])
        if int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
            return Verification(
                [f"cache schema {f.attrs.get('schema_version')}, expected {SCHEMA_VERSION}"]
            )
        if "shard_index" in f.attrs:
            return Verification([shard_problem(f)])
        result = Verification(structure_problems(f))
        if result.problems:
            return result
        groups = table_groups(f)
        if "" not in groups:  # a multi-stream file's own attributes
            _add_digests(result, f, "", tables=False)
        for prefix, group in groups.items():
            assert group is not None  # structure_problems names a missing stream
            result.problems += _full_problems(group, prefix)
            _add_digests(result, group, prefix)
    return result


def verify_lines(path: str | Path) -> tuple[list[str], list[str], int]:
    """``vlprobe verify``: (stdout lines, stderr lines, exit code: 1 on a broken cache)."""
    result = verify(path)
    if result.problems:
        lines = [f"{path}: BROKEN ({len(result.problems)} problem(s))"]
        lines += [f"  {problem}" for problem in result.problems]
        lines.append("  delete it: a run rebuilds its cache (or `vlprobe extract`)")
        return [], lines, 1
    out = [
        f"{path}: OK (complete, every dataset present, consistent; every dataset and attribute "
        "read back against its checksum" + (", but those below" if result.unchecked else "") + ")"
    ]
    if result.unchecked:
        out.append(
            "  not checked (no checksum stored: written by a vlprobe before they were; "
            "rebuild it to have them): " + ", ".join(result.unchecked)
        )
    return out, [], 0


def _add_digests(result: Verification, group: h5py.Group, prefix: str, tables=True) -> None:
    problems, unchecked = digest_problems(group, prefix, tables)
    result.problems += problems
    result.unchecked += unchecked


def _full_problems(group: h5py.Group, prefix: str) -> list[str]:
    """Read every dataset of one token sequence's group, then check its index values."""
    problems: list[str] = []
    index: dict[str, np.ndarray] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind != "O":  # strings: by digests
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
