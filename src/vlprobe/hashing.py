"""The one sha256 helper of vlprobe: of a text, of a file, of every file under some paths.

A leaf module (hashlib only), so extraction, pre-training and the cache can all import it
without importing one another (``pretrain`` took ``content_hash`` from ``extraction``: a loop).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_BLOCK = 1 << 20


def text_sha256(text: str, length: int | None = None) -> str:
    """Hex sha256 of ``text`` (UTF-8), its first ``length`` digits when given (names, keys)."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _update(digest: Any, file: Path) -> None:
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of one file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    _update(digest, Path(path))
    return digest.hexdigest()


def data_files(path: Path) -> list[Path]:
    """Every file under ``path`` (or ``path`` itself), through symlinked folders too: a data
    subfolder linked from elsewhere (``Annotations -> /big/disk/...``) is data like any other
    (``Path.rglob`` does not follow it). A link back to a folder already walked is skipped."""
    if not path.is_dir():
        return [path]
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for folder, dirs, names in os.walk(path, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:  # a symlink loop: walked already
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        files += [Path(folder, n) for n in names if Path(folder, n).is_file()]
    return sorted(files)


def content_hash(paths: Iterable[str | Path]) -> str:
    """Hex sha256 over the names and bytes of every file under ``paths`` (each folder's files
    sorted), for provenance: a cache's ``dataset_hash``, uniter-mini's training data."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for path in map(Path, paths):
        files += data_files(path)
    for file in files:
        digest.update(str(file.name).encode())
        _update(digest, file)
    return digest.hexdigest()
