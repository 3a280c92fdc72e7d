"""Text data files opened one way: UTF-8, a byte-order mark dropped, bad bytes named by line.

Windows editors save UTF-8 with a BOM, which Python's ``utf-8`` codec keeps as an invisible
U+FEFF in the first field (a split file's first image id no longer matched its Sentences file,
and ``data.strict=false`` dropped it silently); a Latin-1 file gave ``'utf-8' codec can't
decode`` naming neither file nor line. Undecodable bytes are kept as surrogates by the reader
and reported with :func:`check_utf8` where the line is parsed, so ``data.strict=false`` skips
just that line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO

from vlprobe.data.errors import DataFormatError

_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # undecodable bytes under errors="surrogateescape"
HINT = "Save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8), or data.strict=false skips"


def open_text(path: Path) -> IO[str]:
    """``path`` for reading lines: UTF-8, a leading BOM dropped, bad bytes kept as surrogates."""
    return open(path, encoding="utf-8-sig", errors="surrogateescape")


def check_utf8(line: str, path: Path, location: str) -> str:
    """``line`` unchanged, or a :class:`DataFormatError` naming the first undecodable byte."""
    bad = _NOT_UTF8.search(line)
    if bad is None:
        return line
    byte = ord(bad.group()) - 0xDC00
    raise DataFormatError(
        path,
        location,
        f"not UTF-8 text (byte 0x{byte:02x} at column {bad.start() + 1})",
        f"{HINT} such lines",
    )
