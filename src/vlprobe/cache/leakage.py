"""Refuse splits that leak: an image (or sentence) must sit in exactly one split.

Pairs and tokens of one image share the image's features; if the image appears in training
and test, a probe can score by recognising the image instead of decoding the property.
"""

from __future__ import annotations

import numpy as np

from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import SPLIT_NAMES


class LeakageError(ValueError):
    """A group (image or sentence) found in more than one split."""


def leaking_groups(groups: np.ndarray, splits: np.ndarray) -> dict[str, list[str]]:
    """Group -> the split names it appears in, for every group in two or more splits."""
    seen: dict[str, set[int]] = {}
    for group, split in zip(groups.tolist(), splits.tolist(), strict=True):
        key = group.decode() if isinstance(group, bytes) else str(group)
        seen.setdefault(key, set()).add(int(split))
    return {g: [SPLIT_NAMES[s] for s in sorted(ss)] for g, ss in seen.items() if len(ss) > 1}


def check_no_leakage(reader: CacheReader, max_listed: int = 5) -> None:
    leaks = leaking_groups(reader.example("group"), reader.example_split)
    if leaks:
        listed = "; ".join(f"{g!r} in {', '.join(s)}" for g, s in list(leaks.items())[:max_listed])
        raise LeakageError(
            f"{reader.path}: {len(leaks)} image/sentence group(s) appear in more than one split "
            f"({listed}). Fix the split lists (e.g. Flickr30k train.txt/val.txt/test.txt) and "
            "re-extract: splits must be by image or sentence, never by pair or token."
        )
