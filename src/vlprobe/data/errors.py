"""Errors and skip logs shared by every reader.

A bad record either stops the read (``strict=True``: one :class:`DataFormatError` naming the
file, the line or JSON path, what is wrong and what to do) or is skipped and recorded in a
:class:`ProblemLog` (``strict=False``), so that nothing is ever dropped silently.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class DataFormatError(ValueError):
    """A record that does not follow its format, e.g. ``"a.txt, line 12: bad split 'xx'. Use ..."``.

    ``location`` is ``"line 12"``, a JSON path such as ``"[3].relationships[0].subject"`` or an
    XML path; ``hint`` says what to do about it.
    """

    def __init__(
        self, path: str | os.PathLike[str], location: str, message: str, hint: str = ""
    ) -> None:
        self.path = str(path)
        self.location = location
        self.message = message
        self.hint = hint
        super().__init__(self.path, location, message, hint)

    def __str__(self) -> str:
        where = f"{self.path}, {self.location}" if self.location else self.path
        text = f"{where}: {self.message}"
        if self.hint:
            text = f"{text.rstrip('.')}. {self.hint}"
        return text


@dataclass(frozen=True)
class Problem:
    """One skipped record."""

    path: str
    location: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}, {self.location}" if self.location else self.path
        return f"{where}: {self.message}"


class ProblemLog:
    """Collects the records a non-strict read skipped; :meth:`report` summarises them."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str | os.PathLike[str], location: str, message: str) -> None:
        self.problems.append(Problem(str(path), location, message))

    def record(self, error: DataFormatError) -> None:
        self.add(error.path, error.location, error.message)

    def __len__(self) -> int:
        return len(self.problems)

    def counts_by_path(self) -> dict[str, int]:
        return dict(Counter(p.path for p in self.problems))

    def report(self, max_listed: int = 10) -> str:
        """``"skipped 3 bad records (a.txt: 2, b.json: 1); first 3: ..."``, one per line."""
        n = len(self.problems)
        if n == 0:
            return "no records skipped"
        per_file = ", ".join(f"{p}: {c}" for p, c in self.counts_by_path().items())
        shown = self.problems[:max_listed]
        lines = [f"skipped {n} bad record{'s' if n != 1 else ''} ({per_file}); first {len(shown)}:"]
        lines += [f"  {p}" for p in shown]
        if n > len(shown):
            lines.append(f"  ... and {n - len(shown)} more")
        return "\n".join(lines)


def skip_or_raise(error: DataFormatError, strict: bool, problems: ProblemLog | None) -> None:
    """Raise in strict mode; otherwise record the skip (or log it when no log was given)."""
    if strict:
        raise error
    if problems is not None:
        problems.record(error)
    else:
        logger.warning("skipped: %s", error)
