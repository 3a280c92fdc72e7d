"""The task-level example: what extraction feeds a model and what the cache records about it.

Builders (``build_*_examples``) turn reader output into these; the synthetic set goes through
the same readers, so real and demo data share one path from here on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlprobe.data.types import Box
from vlprobe.models.base import ModelInput


@dataclass(frozen=True)
class Region:
    """A gold object tied to one input region of the model (``ModelInput.region_boxes`` row)."""

    region_index: int  # row of the model's input regions
    box: Box  # the gold box
    category: str  # VG: first object name; Flickr30k: first phrase type of the chain
    key: str  # VG object id / Flickr30k chain id


@dataclass(frozen=True)
class PhraseSpan:
    word_start: int  # half-open span over ``ModelInput.words``
    word_end: int
    types: tuple[str, ...]
    chain_id: str
    regions: tuple[int, ...]  # indexes into ``VLExample.regions``: the coreferent gold regions


@dataclass(frozen=True)
class RelationPair:
    subject: int  # indexes into ``VLExample.regions``
    object: int
    predicate: str | None  # normalised predicate; None = a sampled unrelated pair


@dataclass
class VLExample:
    example_id: str  # unique, e.g. "1000092795#2" (image id, caption index)
    group_id: str  # the split unit: the image id, or the sentence id for text-only data
    split: str  # train / val / test
    inputs: ModelInput
    regions: list[Region] = field(default_factory=list)
    phrases: list[PhraseSpan] = field(default_factory=list)
    relations: list[RelationPair] = field(default_factory=list)
    label: str | None = None  # sentence-level label (SentEval)
