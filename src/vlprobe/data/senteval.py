"""SentEval probing-task files: ``split \\t label \\t tokenised sentence`` per line."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from vlprobe.data.errors import DataFormatError, ProblemLog, skip_or_raise
from vlprobe.data.text import check_utf8, open_text
from vlprobe.data.types import SentEvalExample

SENTEVAL_TASKS: dict[str, str] = {
    "sentence_length": "sentence_length.txt",
    "word_content": "word_content.txt",
    "tree_depth": "tree_depth.txt",
    "top_constituents": "top_constituents.txt",
    "bigram_shift": "bigram_shift.txt",
    "past_present": "past_present.txt",
    "subj_number": "subj_number.txt",
    "obj_number": "obj_number.txt",
    "odd_man_out": "odd_man_out.txt",
    "coordination_inversion": "coordination_inversion.txt",
}
"""Task name -> file name in the SentEval ``probing`` folder."""


@dataclass(frozen=True)
class LabelSet:
    """A task's valid labels: a closed set, or for open vocabularies a full-match pattern.

    A typo (``pres`` for ``PRES``) must be an error, not a class of its own.
    """

    values: tuple[str, ...] = ()
    pattern: str = ""
    description: str = ""

    def __contains__(self, label: str) -> bool:
        if self.values:
            return label in self.values
        return re.fullmatch(self.pattern, label) is not None

    def describe(self) -> str:
        return ", ".join(self.values) if self.values else self.description


_TAG = r"(?:[A-Z$]+(?:-[A-Z]+)*|[.,:;])"
SENTEVAL_LABELS: dict[str, LabelSet] = {
    "sentence_length": LabelSet(values=tuple(str(k) for k in range(6))),
    "word_content": LabelSet(pattern=r"[^\sA-Z]+", description="one lower-case word"),
    "tree_depth": LabelSet(pattern=r"[1-9][0-9]*", description="a depth (a positive integer)"),
    "top_constituents": LabelSet(
        pattern=rf"OTHER|{_TAG}(?:_{_TAG})*",
        description="constituent tags joined by '_' (e.g. NP_VP_.), or OTHER",
    ),
    "bigram_shift": LabelSet(values=("O", "I")),
    "past_present": LabelSet(values=("PAST", "PRES")),
    "subj_number": LabelSet(values=("NN", "NNS")),
    "obj_number": LabelSet(values=("NN", "NNS")),
    "odd_man_out": LabelSet(values=("O", "C")),
    "coordination_inversion": LabelSet(values=("O", "I")),
}
"""Task name -> the labels its file may hold (the real SentEval label sets)."""

_SPLIT_CODES = {"tr": "train", "va": "val", "te": "test"}


def read_senteval(
    path: str | os.PathLike[str],
    strict: bool = True,
    problems: ProblemLog | None = None,
    task: str | None = None,
) -> list[SentEvalExample]:
    """All lines of one probing file; ``line`` is 1-based; blank lines are passed over.

    The sentence is the last tab-separated field and the label the second, so a stray tab
    between label and sentence does not shift the sentence. Labels are checked against
    ``task``'s label set (default: the task the file is named after; none for other names).
    """
    path = Path(path)
    task = task or path.stem
    labels = SENTEVAL_LABELS.get(task)
    examples: list[SentEvalExample] = []
    with open_text(path) as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = check_utf8(raw, path, f"line {n}").rstrip("\r\n")
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) < 3:
                    raise DataFormatError(
                        path,
                        f"line {n}",
                        f"expected 3 tab-separated fields, got {len(fields)}",
                        "Write 'split<TAB>label<TAB>sentence'",
                    )
                code, label, sentence = fields[0].strip(), fields[1].strip(), fields[-1].strip()
                if code not in _SPLIT_CODES:
                    raise DataFormatError(
                        path,
                        f"line {n}",
                        f"unknown split code '{code}'",
                        "Use tr, va or te",
                    )
                if not label or not sentence:
                    raise DataFormatError(
                        path,
                        f"line {n}",
                        f"empty {'label' if not label else 'sentence'}",
                        "Every line needs a label and a sentence",
                    )
                if labels is not None and label not in labels:
                    raise DataFormatError(
                        path,
                        f"line {n}",
                        f"unknown {task} label '{label}'",
                        f"Valid labels: {labels.describe()} (data.strict=false skips such lines)",
                    )
            except DataFormatError as e:
                skip_or_raise(e, strict, problems)
                continue
            examples.append(SentEvalExample(_SPLIT_CODES[code], label, sentence, n))
    if not examples:
        skipped = f" ({len(problems)} line(s) skipped, data.strict=false)" if problems else ""
        raise DataFormatError(
            path,
            "",
            f"holds no example{skipped}",
            "A SentEval file has one 'split<TAB>label<TAB>sentence' line per sentence; check "
            "data.senteval",
        )
    return examples
