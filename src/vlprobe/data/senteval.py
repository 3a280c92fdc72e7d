"""SentEval probing-task files: ``split \\t label \\t tokenised sentence`` per line."""

from __future__ import annotations

import os
from pathlib import Path

from vlprobe.data.errors import DataFormatError, ProblemLog, skip_or_raise
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

_SPLIT_CODES = {"tr": "train", "va": "val", "te": "test"}


def read_senteval(
    path: str | os.PathLike[str], strict: bool = True, problems: ProblemLog | None = None
) -> list[SentEvalExample]:
    """All lines of one probing file; ``line`` is 1-based; blank lines are passed over.

    The sentence is the last tab-separated field and the label the second, so a stray tab
    between label and sentence does not shift the sentence.
    """
    path = Path(path)
    examples: list[SentEvalExample] = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            try:
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
            except DataFormatError as e:
                skip_or_raise(e, strict, problems)
                continue
            examples.append(SentEvalExample(_SPLIT_CODES[code], label, sentence, n))
    return examples
