"""Names and constants of the HDF5 cache layout (documented in docs/cache_format.md)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from vlprobe.cache.fields import BY_PATH, FIELDS, MAPS, ROW_SYMBOL, field, part_fields

SCHEMA_VERSION = 2  # 2: phrase grounding over all input regions, [CLS] mass on specials
SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
PARTIAL_SUFFIX = ".partial"  # a builder writes <name>.<pid>-<random>.partial, then renames it
TARGET_CHUNK_BYTES = 1 << 18  # 256 KiB, full feature rows: about one shuffled block of a batch
# (bench/loader_throughput.py: 1 MiB chunks read 2-5x the bytes a 256-row batch needs)
READ_CACHE_BYTES = 64 << 20  # rdcc_nbytes for readers: several chunks per dataset stay hot
MAX_CHUNK_ROWS = 1 << 14  # small per-row fields: chunks are allocated whole, keep them modest

# Datasets by group (from the declaration, vlprobe.cache.fields), with the axis that counts the
# group's rows. A group is all there or not there at all (a reader checks); ``examples`` is
# always there. Running totals (``*_offset``: one row more than what they index) are left out.
GROUPS: dict[str, dict[str, int]] = {
    part: {f.path: f.axis for f in part_fields(part)} for part in ROW_SYMBOL
}
# Parts a cache may hold beyond its core (examples incl. [CLS] mass, token modality and word
# index): a task declares the parts it reads and extraction writes those (docs/cache_format.md).
CORE_GROUPS = ("examples", "tokens")
PARTS: tuple[str, ...] = (
    "token_states",
    "region",
    "phrase",
    "sentence",
    "relation",
    "coref",
    "maps",
)
_PART_NEEDS = {"relation": ("region",), "coref": ("phrase", "region")}  # pairs index units


def expand_parts(parts: Iterable[str]) -> frozenset[str]:
    """``parts`` with the parts they index (relation pairs need region units ...), checked."""
    wanted = set(parts)
    unknown = sorted(wanted - set(PARTS))
    if unknown:
        raise ValueError(f"unknown cache part(s) {unknown}; valid: {', '.join(PARTS)}")
    for part in list(wanted):
        wanted.update(_PART_NEEDS.get(part, ()))
    return frozenset(wanted)


def part_of(name: str) -> str:
    """The group or part a dataset belongs to (``examples``/``tokens`` for the core)."""
    if name.startswith(MAPS):
        return "maps"
    return field(name).part


# per hidden layer (axis 0 = layers + 1) and per attention head (axes 1, 2 = layers, heads)
HIDDEN_DATASETS = tuple(f.path for f in FIELDS if f.per_layer)
HEAD_DATASETS = tuple(f.path for f in FIELDS if f.per_head)


# units/<kind>/<field>: one row per unit; pairs/<kind>/<field>: one row per pair of units
UNIT_KINDS = tuple(dict.fromkeys(f.path.split("/")[1] for f in FIELDS if f.path[:6] == "units/"))
PAIR_KINDS = tuple(dict.fromkeys(f.path.split("/")[1] for f in FIELDS if f.path[:6] == "pairs/"))


def _declared(path: str) -> str:
    """``path`` if the declaration (vlprobe.cache.fields) has it, else a KeyError listing the
    fields of its group."""
    if path in BY_PATH:
        return path
    group = path.rsplit("/", 1)[0]
    valid = [f.path.rsplit("/", 1)[1] for f in FIELDS if f.path.rsplit("/", 1)[0] == group]
    raise KeyError(f"no cache field {path!r}; {group}/ holds: {', '.join(valid)}")


def unit_path(kind: str, field: str) -> str:
    """The dataset of a unit field, e.g. ``unit_path("region", "embedding")``."""
    if kind not in UNIT_KINDS:
        raise KeyError(f"unknown unit kind {kind!r}; valid: {', '.join(UNIT_KINDS)}")
    return _declared(f"units/{kind}/{field}")


def pair_path(kind: str, field: str) -> str:
    """The dataset of a pair field, e.g. ``pair_path("relation", "attention")``."""
    if kind not in PAIR_KINDS:
        raise KeyError(f"unknown pair kind {kind!r}; valid: {', '.join(PAIR_KINDS)}")
    return _declared(f"pairs/{kind}/{field}")


def example_path(field: str) -> str:
    """A per-example dataset, e.g. ``example_path("token_offset")``."""
    return _declared(f"examples/{field}")


def token_path(field: str) -> str:
    """A per-token dataset of all examples, e.g. ``token_path("hidden")``."""
    return _declared(f"tokens/{field}")


def rows_per_chunk(row_bytes: int, total_rows_hint: int | None = None) -> int:
    """Rows per chunk so one chunk is about ``TARGET_CHUNK_BYTES`` and spans whole rows."""
    rows = min(MAX_CHUNK_ROWS, max(1, TARGET_CHUNK_BYTES // max(1, row_bytes)))
    if total_rows_hint:
        rows = min(rows, max(1, total_rows_hint))
    return rows


def partial_path(path: Path) -> Path:
    """This builder's own unfinished file for ``path``: never shared with another builder."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


def partial_files(path: Path) -> list[Path]:
    """Unfinished files of any builder of ``path`` (left behind when one was killed)."""
    return sorted(path.parent.glob(f"{path.name}.*{PARTIAL_SUFFIX}"))


STREAMS_GROUP = "streams"  # a multi-stream cache (LXMERT): one group per stream, listed in attrs


def stream_group(name: str) -> str:
    """The group of stream ``name`` in a multi-stream cache, e.g. ``streams/vision``."""
    return f"{STREAMS_GROUP}/{name}"
