"""Plain records shared by every reader, the synthetic generator and extraction.

Readers turn real files into these; nothing downstream looks at file formats again.
Boxes are always pixels ``(x1, y1, x2, y2)`` with ``x2 > x1`` and ``y2 > y1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FLICKR_TYPES: tuple[str, ...] = (
    "people",
    "clothing",
    "bodyparts",
    "animals",
    "vehicles",
    "instruments",
    "scene",
    "other",
)
"""The 8 visual phrase types of Flickr30k Entities, in label-id order (``notvisual`` excluded)."""

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)

    def as_array(self) -> np.ndarray:
        return np.array([self.x1, self.y1, self.x2, self.y2], dtype=np.float32)


# ---------------------------------------------------------------- Flickr30k Entities
@dataclass(frozen=True)
class Phrase:
    """One bracketed phrase of a caption; ``first_word`` indexes the caption's words."""

    chain_id: str
    types: tuple[str, ...]
    words: tuple[str, ...]
    first_word: int

    @property
    def word_span(self) -> tuple[int, int]:
        """Half-open ``[start, end)`` over the caption's words."""
        return self.first_word, self.first_word + len(self.words)


@dataclass(frozen=True)
class Caption:
    image_id: str
    index: int  # line number within Sentences/<image_id>.txt, from 0
    words: tuple[str, ...]  # the caption with the bracket markup removed, whitespace-tokenised
    phrases: tuple[Phrase, ...]


@dataclass
class EntityAnnotation:
    """``Annotations/<image_id>.xml``: boxes per coreference chain."""

    image_id: str
    width: int
    height: int
    boxes: dict[str, list[Box]] = field(default_factory=dict)  # chain id -> boxes
    nobox: set[str] = field(default_factory=set)  # chains flagged <nobndbox>1
    scene: set[str] = field(default_factory=set)  # chains flagged <scene>1


# ---------------------------------------------------------------- Visual Genome
@dataclass(frozen=True)
class VGObject:
    object_id: int
    box: Box
    names: tuple[str, ...]


@dataclass(frozen=True)
class VGRelation:
    relationship_id: int
    predicate: str  # normalised: lower case, single spaces, stripped
    subject_id: int
    object_id: int


@dataclass
class VGImage:
    image_id: str
    width: int
    height: int
    objects: dict[int, VGObject] = field(default_factory=dict)
    relations: list[VGRelation] = field(default_factory=list)


# ---------------------------------------------------------------- SentEval
@dataclass(frozen=True)
class SentEvalExample:
    split: str  # train / val / test (from tr / va / te)
    label: str
    sentence: str
    line: int  # 1-based line in the file, for error messages and provenance


# ---------------------------------------------------------------- region features
@dataclass
class RegionFeatures:
    """Detector output for one image: boxes in pixels, one feature row per box."""

    image_id: str
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 pixels
    features: np.ndarray  # (N, D) float32

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"image {self.image_id}: boxes must be (N, 4), got {self.boxes.shape}")
        if self.features.shape[0] != self.boxes.shape[0]:
            raise ValueError(
                f"image {self.image_id}: {self.boxes.shape[0]} boxes but "
                f"{self.features.shape[0]} feature rows"
            )
