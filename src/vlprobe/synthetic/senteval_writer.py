"""Write the ten SentEval probing files (``split \\t label \\t sentence``), class-balanced.

Labels cycle through each task's label set; the first 80% of the lines drawn are ``tr``, the
next 10% ``va`` and the last 10% ``te``, so every split is class-balanced to within one line.
The file lists train, validation and test lines in that order, like the real files, and no
sentence repeats in a file, so no sentence is shared between splits.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from vlprobe.synthetic.senteval_grammar import TASK_LABELS, SentenceGenerator


def task_lines(task: str, n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """``n`` (split code, label, sentence) triples of one task, in file order."""
    rng = random.Random(f"vlprobe-senteval:{seed}:{task}")
    gen = SentenceGenerator(rng)
    labels = TASK_LABELS[task]
    seen: set[str] = set()
    by_split: dict[str, list[tuple[str, str, str]]] = {"tr": [], "va": [], "te": []}
    for i in range(n):
        label = labels[i % len(labels)]
        for _ in range(100):
            text = gen.generate(task, label).text
            if text not in seen:
                break
        else:
            raise RuntimeError(f"{task}: no new sentence for label {label!r} after 100 tries")
        seen.add(text)
        split = "tr" if i < 0.8 * n else "va" if i < 0.9 * n else "te"
        by_split[split].append((split, label, text))
    out: list[tuple[str, str, str]] = []
    for split in ("tr", "va", "te"):
        rng.shuffle(by_split[split])
        out += by_split[split]
    return out


def write_senteval(folder: str | os.PathLike[str], per_task: int = 600, seed: int = 0) -> Path:
    """Write ``folder/<task>.txt`` for all ten tasks; returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for task in TASK_LABELS:
        lines = task_lines(task, per_task, seed)
        (folder / f"{task}.txt").write_text(
            "".join(f"{s}\t{label}\t{text}\n" for s, label, text in lines), encoding="utf-8"
        )
    return folder
