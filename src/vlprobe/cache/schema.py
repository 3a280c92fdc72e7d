"""Names and constants of the HDF5 cache layout (documented in docs/cache_format.md)."""

from __future__ import annotations

SCHEMA_VERSION = 1
SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
PARTIAL_SUFFIX = ".partial"
TARGET_CHUNK_BYTES = 1 << 18  # 256 KiB, full feature rows: about one shuffled block of a batch
# (bench/loader_throughput.py: 1 MiB chunks read 2-5x the bytes a 256-row batch needs)
READ_CACHE_BYTES = 64 << 20  # rdcc_nbytes for readers: several chunks per dataset stay hot
MAX_CHUNK_ROWS = 1 << 14  # small per-row fields: chunks are allocated whole, keep them modest


UNIT_KINDS = ("region", "phrase", "sentence")  # units/<kind>/<field>: one row per unit
PAIR_KINDS = ("relation", "coref")  # pairs/<kind>/<field>: one row per pair of units


def unit_path(kind: str, field: str) -> str:
    """The dataset of a unit field, e.g. ``unit_path("region", "embedding")``."""
    if kind not in UNIT_KINDS:
        raise KeyError(f"unknown unit kind {kind!r}; valid: {', '.join(UNIT_KINDS)}")
    return f"units/{kind}/{field}"


def pair_path(kind: str, field: str) -> str:
    """The dataset of a pair field, e.g. ``pair_path("relation", "attention")``."""
    if kind not in PAIR_KINDS:
        raise KeyError(f"unknown pair kind {kind!r}; valid: {', '.join(PAIR_KINDS)}")
    return f"pairs/{kind}/{field}"


def example_path(field: str) -> str:
    """A per-example dataset, e.g. ``example_path("token_offset")``."""
    return f"examples/{field}"


def token_path(field: str) -> str:
    """A per-token dataset of all examples, e.g. ``token_path("hidden")``."""
    return f"tokens/{field}"


def rows_per_chunk(row_bytes: int, total_rows_hint: int | None = None) -> int:
    """Rows per chunk so one chunk is about ``TARGET_CHUNK_BYTES`` and spans whole rows."""
    rows = min(MAX_CHUNK_ROWS, max(1, TARGET_CHUNK_BYTES // max(1, row_bytes)))
    if total_rows_hint:
        rows = min(rows, max(1, total_rows_hint))
    return rows
