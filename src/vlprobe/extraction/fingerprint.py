"""What a cache was built from: the input files (size, mtime, content hash) and the settings.

The cache's name covers the config only; the fingerprint, stored in the cache, covers the data
too, so a data set changed in place (a file edited, halved, replaced) is noticed on reuse and
the cache rebuilt, with the reason logged. Files up to ``HASHED_BYTES`` are compared by content
(a copy with new mtimes is still the same data); larger ones, and image folders, by size and
mtime (hashing GBs of features on every run would cost more than the run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlprobe.hashing import data_files, file_sha256

HASHED_BYTES = 16 << 20


def file_entries(path: Path, hash_contents: bool = True) -> dict[str, list[Any] | None]:
    """``{file: [size, mtime_ns, sha256 or None]}`` for ``path`` (a file or a folder);
    ``{path: None}`` when it does not exist."""
    path = Path(path).resolve()
    if not path.exists():
        return {str(path): None}
    entries: dict[str, list[Any] | None] = {}
    for file in data_files(path):
        stat = file.stat()
        small = hash_contents and stat.st_size <= HASHED_BYTES
        entries[str(file)] = [stat.st_size, stat.st_mtime_ns, file_sha256(file) if small else None]
    return entries


def input_fingerprint(sources: list[tuple[Path, bool]], settings: dict[str, Any]) -> dict[str, Any]:
    """``sources``: (file or folder, compare contents?) pairs; ``settings``: every builder
    setting (JSON-able)."""
    files: dict[str, list[Any] | None] = {}
    for path, hash_contents in sources:
        files.update(file_entries(path, hash_contents))
    return {"files": files, "settings": json.loads(json.dumps(settings, sort_keys=True))}


def missing_inputs(fingerprint: dict[str, Any]) -> list[str]:
    return [name for name, entry in fingerprint["files"].items() if entry is None]


def _same_file(old: list[Any], new: list[Any]) -> bool:
    if old[2] is not None and new[2] is not None:
        return old[2] == new[2]
    return old[:2] == new[:2]


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flat(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed from ``old`` to ``new``, one phrase each (empty: the same inputs)."""
    changes: list[str] = []
    old_settings, new_settings = _flat(old.get("settings", {})), _flat(new["settings"])
    for key in sorted(old_settings.keys() | new_settings.keys()):
        before, after = old_settings.get(key, "<unset>"), new_settings.get(key, "<unset>")
        if before != after:
            changes.append(f"setting {key} changed ({before} -> {after})")
    old_files, new_files = old.get("files", {}), new["files"]
    for name in sorted(old_files.keys() | new_files.keys()):
        before, after = old_files.get(name), new_files.get(name)
        if before is None and after is None:
            continue
        if before is None:
            changes.append(f"input {name} is new")
        elif after is None:
            changes.append(f"input {name} is gone")
        elif not _same_file(before, after):
            size = f"size {before[0]} -> {after[0]} bytes" if before[0] != after[0] else "content"
            changes.append(f"input {name} changed ({size})")
    return changes
