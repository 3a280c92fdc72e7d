"""sha256 digests of what HDF5 cannot checksum: attributes and variable-length strings.

Fixed-size datasets carry a Fletcher-32 checksum per chunk, checked by HDF5 on every read.
Attributes (``label_names``, ``layer_names``, provenance) and string datasets
(``examples/id``, ``group``, ``text``) have none, so a flipped byte in a caption or an edited
label list would read back as valid. The writer and the shard merge :func:`seal` each token
sequence's group (and the file's root) last, storing a digest of every attribute and of
every dataset without a chunk checksum in the ``checksums`` attribute; ``vlprobe verify``
recomputes them (:func:`digest_problems`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import h5py
import numpy as np

from vlprobe.cache.schema import stream_group
from vlprobe.hashing import text_sha256

CHECKSUMS_ATTR = "checksums"
# set after the seal (the publication flag) or the seal itself
UNSEALED = ("complete", CHECKSUMS_ATTR)
_BLOCK = 1 << 16  # string rows per read


def _plain(value: object) -> object:
    """An attribute value as plain JSON data (numpy scalars and arrays unwrapped)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return value


def attr_digest(value: object) -> str:
    """sha256 of an attribute's value and type (``1`` and ``"1"`` differ)."""
    blob = json.dumps(_plain(value), sort_keys=True, default=repr)
    return text_sha256(f"{type(_plain(value)).__name__}:{blob}")


def dataset_digest(ds: h5py.Dataset) -> str:
    """sha256 of a dataset's shape and raw values (strings as stored bytes: no decoding)."""
    digest = hashlib.sha256(f"{ds.shape}".encode())
    if ds.dtype.kind == "O":  # variable length: each value's bytes, length-prefixed
        for lo in range(0, ds.shape[0] if ds.ndim else 1, _BLOCK):
            block = ds[lo : lo + _BLOCK] if ds.ndim else [ds[()]]
            for value in block:
                raw = value if isinstance(value, bytes) else str(value).encode()
                digest.update(len(raw).to_bytes(8, "little") + raw)
    else:
        digest.update(np.ascontiguousarray(ds[()]).tobytes())
    return digest.hexdigest()


def unchecksummed(group: h5py.Group, tables: bool) -> list[str]:
    """The datasets directly in ``group``'s tables without a chunk checksum (none at a
    multi-stream file's root, whose tables are in its stream groups)."""
    if not tables:
        return []
    names: list[str] = []
    group.visititems(
        lambda name, obj: (
            names.append(name) if isinstance(obj, h5py.Dataset) and not obj.fletcher32 else None
        )
    )
    return sorted(names)


def seal(group: h5py.Group, tables: bool = True) -> None:
    """Store digests of ``group``'s attributes and of its datasets without chunk checksums
    (``tables``: the group holds a token sequence's datasets). Call it after the last write."""
    sealed = {
        "attrs": {k: attr_digest(v) for k, v in group.attrs.items() if k not in UNSEALED},
        "datasets": {name: dataset_digest(group[name]) for name in unchecksummed(group, tables)},
    }
    group.attrs[CHECKSUMS_ATTR] = json.dumps(sealed, sort_keys=True)


def digest_problems(
    group: h5py.Group, prefix: str, tables: bool = True
) -> tuple[list[str], list[str]]:
    """(problems, what could not be checked) of ``group``'s attributes and unchecksummed
    datasets against its stored digests; names carry ``prefix`` (``streams/vision/``)."""
    where = prefix.rstrip("/") or "the file"
    names = unchecksummed(group, tables)
    stored = group.attrs.get(CHECKSUMS_ATTR)
    if stored is None:
        unchecked = [f"{prefix}{n}" for n in names] + [f"the attributes of {where}"]
        return [], unchecked
    sealed = json.loads(stored)
    problems: list[str] = []
    attrs = {k: v for k, v in group.attrs.items() if k not in UNSEALED}
    for key, digest in sealed["attrs"].items():
        if key not in attrs:
            problems.append(f"attribute {key} of {where} is missing (it was written)")
        elif attr_digest(attrs[key]) != digest:
            problems.append(
                f"attribute {key} of {where} does not match its checksum (changed or damaged "
                "after the cache was written)"
            )
    problems += [
        f"attribute {key} of {where} was added after the cache was written"
        for key in sorted(set(attrs) - set(sealed["attrs"]))
    ]
    unchecked = []
    for name in names:
        if name not in sealed["datasets"]:
            unchecked.append(f"{prefix}{name}")
            continue
        try:
            same = dataset_digest(group[name]) == sealed["datasets"][name]
        except OSError as err:
            problems.append(f"{prefix}{name}: cannot be read back ({err})")
            continue
        if not same:
            problems.append(
                f"{prefix}{name} does not match its checksum (a value changed or was damaged "
                "after the cache was written)"
            )
    return problems, unchecked


def seal_file(f: h5py.File, streams: Iterable[str]) -> None:
    """Seal every stream's group, then the root (a one-sequence file: the root is its table)."""
    streams = list(streams)
    for stream in streams:
        seal(f[stream_group(stream)])
    seal(f, tables=not streams)
