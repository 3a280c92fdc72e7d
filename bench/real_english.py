"""A SentEval-format bigram-shift file made of real English sentences found on this machine.

The synthetic VALUE-mini grammar is not English; comparisons with scikit-learn or SentEval
must also hold on real prose. Sources, in order (every CPython ships the first):
the Python reference manual's prose (``pydoc_data.topics``), the licence texts in
``/usr/share/common-licenses`` and Vim's manuals, where present. Sentences are split on
sentence-final punctuation, tokenised as SentEval's files are (punctuation split off), kept
when they look like prose (6-25 tokens, letters and light punctuation only), de-duplicated,
and half of them get two adjacent different tokens swapped (label ``I``; the rest ``O``),
as in SentEval's BShift. Splits are by sentence, 80/10/10.

    python bench/real_english.py --out /tmp/bigram_shift.txt
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import random
import re
from collections.abc import Iterator
from pathlib import Path

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_TOKEN = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|[.,;!?]")
_PROSE = re.compile(r"^[A-Z][A-Za-z ,;'-]*[A-Za-z][.!?]$")
SPLITS = (("tr", 0.8), ("va", 0.1), ("te", 0.1))


def source_texts() -> Iterator[tuple[str, str]]:
    """(source name, raw text) for every prose source present on this machine."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"pydoc:{name}", topics[name]
    patterns = ("/usr/share/common-licenses/*", "/usr/share/vim/vim*/doc/*.txt")
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if Path(path).is_file():
                yield path, Path(path).read_text(encoding="utf-8", errors="replace")


def prose_sentences(text: str) -> Iterator[list[str]]:
    """Tokenised sentences of one text that look like running prose."""
    flat = " ".join(text.split())
    for sentence in _SENTENCE_END.split(flat):
        if not _PROSE.match(sentence):
            continue
        tokens = _TOKEN.findall(sentence)
        if 6 <= len(tokens) <= 25 and "".join(tokens) == re.sub(r"[\s'-]", "", sentence):
            yield tokens


def shift_bigram(tokens: list[str], rng: random.Random) -> list[str] | None:
    """Swap two adjacent different words (never the final punctuation); None if impossible."""
    spots = [i for i in range(len(tokens) - 2) if tokens[i].lower() != tokens[i + 1].lower()]
    if not spots:
        return None
    i = rng.choice(spots)
    return tokens[:i] + [tokens[i + 1], tokens[i]] + tokens[i + 2 :]


def build_lines(seed: int = 0, limit: int | None = None) -> list[str]:
    """SentEval lines ``split \\t label \\t sentence``, class-balanced within each split."""
    seen: set[str] = set()
    sentences: list[list[str]] = []
    for _, text in source_texts():
        for tokens in prose_sentences(text):
            key = " ".join(tokens).lower()
            if key not in seen:
                seen.add(key)
                sentences.append(tokens)
    rng = random.Random(seed)
    rng.shuffle(sentences)
    if limit is not None:
        sentences = sentences[:limit]
    lines: list[str] = []
    start = 0
    for code, share in SPLITS:
        stop = len(sentences) if code == "te" else start + round(share * len(sentences))
        for k, tokens in enumerate(sentences[start:stop]):
            shifted = shift_bigram(tokens, rng) if k % 2 else None
            label, words = ("I", shifted) if shifted else ("O", tokens)
            lines.append(f"{code}\t{label}\t{' '.join(words)}")
        start = stop
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="at most this many sentences")
    args = parser.parse_args()
    lines = build_lines(args.seed, args.limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()[:12]
    counts = {code: sum(line.startswith(code + "\t") for line in lines) for code, _ in SPLITS}
    print(f"{args.out}: {len(lines)} sentences {counts}, sha256 {digest}")


if __name__ == "__main__":
    main()
