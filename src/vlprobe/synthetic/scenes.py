"""Scene sampling for VALUE-mini: objects with category, colour, size and a pixel box.

Every writer (Flickr30k Entities, Visual Genome, BUTD features, images) renders the same
:class:`Scene` list, so the modalities agree by construction. Which pairs are annotated depends
mainly on *what* the two objects are, as in real Visual Genome (people wear clothing, ride
vehicles, hold instruments; clothing is on people): a pair is related when the subject
affinity of one object's type plus the object affinity of the other's, plus a smaller bonus
for boxes that are close, clears a threshold (:func:`relation_score`, :func:`are_related`).
The affinities add up, so a linear probe over ``[subject; object]`` region features can learn
them; the closeness bonus (not linear in the boxes) only decides the borderline type pairs
(people with people, animals with clothing, ...), and the pair's orientation is the one that
scores higher. The predicate is a deterministic function of the two boxes and the two
categories (:func:`relation_predicate`); unrelated pairs stay plentiful (about 60% of pairs).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from vlprobe.data.types import FLICKR_TYPES, Box

CATEGORIES: dict[str, tuple[str, ...]] = {
    "people": ("man", "woman", "child", "boy", "girl"),
    "clothing": ("shirt", "hat", "jacket", "dress"),
    "bodyparts": ("hand", "arm", "head", "leg"),
    "animals": ("dog", "cat", "horse", "bird"),
    "vehicles": ("car", "bike", "bus", "truck"),
    "instruments": ("guitar", "drum", "violin"),
    "scene": ("street", "park", "beach"),
    "other": ("ball", "table", "bench", "box", "bag"),
}
"""Flickr30k Entities type -> object categories (nouns); ``scene`` ones cover the whole image."""

TYPE_OF: dict[str, str] = {c: t for t, cats in CATEGORIES.items() for c in cats}
OBJECT_TYPES: tuple[str, ...] = tuple(t for t in FLICKR_TYPES if t != "scene")
ALL_CATEGORIES: tuple[str, ...] = tuple(c for t in FLICKR_TYPES for c in CATEGORIES[t])

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 215, 40),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
    "orange": (245, 140, 30),
    "purple": (140, 60, 180),
}
SIZES: tuple[str, ...] = ("small", "medium", "large")

PREDICATES: tuple[str, ...] = (
    "wearing",
    "riding",
    "sitting on",
    "holding",
    "playing",
    "walking",
    "in",
    "has",
    "on",
    "bigger than",
    "smaller than",
    "above",
    "below",
    "left of",
    "right of",
    "next to",
    "near",
)
"""Canonical (normalised) predicates, in the rule order of :func:`relation_predicate`."""

SUBJECT_AFFINITY: dict[str, float] = {
    "people": 1.5,
    "animals": 0.6,
    "bodyparts": 0.2,
    "clothing": 0.0,
    "vehicles": 0.0,
    "other": -0.4,
    "instruments": -0.8,
}
"""How readily an object of each type is the *subject* of an annotated relation (a logit)."""

OBJECT_AFFINITY: dict[str, float] = {
    "clothing": 1.0,
    "instruments": 0.8,
    "vehicles": 0.7,
    "animals": 0.5,
    "bodyparts": 0.4,
    "other": 0.3,
    "people": -0.3,
}
"""How readily an object of each type is the *object* of an annotated relation (a logit)."""

CLOSENESS_BONUS = 1.6
"""Added to the score of boxes that touch or nearly touch, fading to 0 at ``FAR_GAP``: smaller
than the spread of the affinity sums (-1.1 to 2.5), so the categories decide most pairs."""

RELATED_THRESHOLD = 2.7
"""A pair is annotated when its better-oriented score exceeds this."""

RELATED_GAP = 0.03
"""Boxes whose gap is at most this fraction of the longer image side count as touching."""

FAR_GAP = 0.25
"""Boxes this fraction of the longer image side apart get no closeness bonus."""

_TYPE_WEIGHTS = {
    "people": 0.28,
    "clothing": 0.12,
    "bodyparts": 0.10,
    "animals": 0.14,
    "vehicles": 0.12,
    "instruments": 0.10,
    "other": 0.14,
}
_SUPPORTS = frozenset({"table", "bench", "car", "bus", "truck", "horse", "bike"})
_CAN_SIT_ON = frozenset({"people", "animals", "instruments", "other"})
_MIN_SIDE = 0.05
_ASPECTS = ((1.0, 1.0), (1.0, 0.75), (0.75, 1.0), (1.0, 0.625))


@dataclass(frozen=True)
class SceneObject:
    """One depicted object; ``box`` is 0-based half-open integer pixels ``x1 y1 x2 y2``."""

    index: int
    category: str
    colour: str
    size: str
    box: tuple[int, int, int, int]
    inside: int | None = None  # index of the person this clothing/body part belongs to

    @property
    def type(self) -> str:
        return TYPE_OF[self.category]

    def as_box(self) -> Box:
        return Box(*(float(v) for v in self.box))


@dataclass(frozen=True)
class Relation:
    subject: int  # SceneObject.index
    object: int
    predicate: str  # canonical, one of PREDICATES


@dataclass
class Scene:
    image_id: str
    width: int
    height: int
    setting: str  # a ``scene`` category: street / park / beach
    objects: list[SceneObject] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)


def _inter(a: Box, b: Box) -> float:
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    return max(0.0, w) * max(0.0, h)


def box_gap(a: Box, b: Box) -> float:
    """Chebyshev gap in pixels between two boxes (0 when they touch or overlap)."""
    gx = max(0.0, max(a.x1, b.x1) - min(a.x2, b.x2))
    gy = max(0.0, max(a.y1, b.y1) - min(a.y2, b.y2))
    return max(gx, gy)


def closeness(a: Box, b: Box, width: int, height: int) -> float:
    """1 when the boxes touch or nearly touch, falling linearly to 0 at a ``FAR_GAP`` gap."""
    side = max(width, height)
    excess = box_gap(a, b) - RELATED_GAP * side
    return min(1.0, max(0.0, 1.0 - excess / ((FAR_GAP - RELATED_GAP) * side)))


def relation_score(subject: str, obj: str, s: Box, o: Box, width: int, height: int) -> float:
    """The annotation score of ``subject`` -> ``obj`` (categories) with boxes ``s`` and ``o``:
    subject affinity + object affinity (by type) + the closeness bonus."""
    return (
        SUBJECT_AFFINITY[TYPE_OF[subject]]
        + OBJECT_AFFINITY[TYPE_OF[obj]]
        + CLOSENESS_BONUS * closeness(s, o, width, height)
    )


def are_related(a: str, box_a: Box, b: str, box_b: Box, width: int, height: int) -> bool:
    """Annotate a pair when its score, in the better orientation, clears the threshold."""
    return (
        max(
            relation_score(a, b, box_a, box_b, width, height),
            relation_score(b, a, box_b, box_a, width, height),
        )
        > RELATED_THRESHOLD
    )


def _touching(s: Box, o: Box, width: int, height: int) -> bool:
    return box_gap(s, o) <= RELATED_GAP * max(width, height)


def relation_predicate(
    s: Box,
    o: Box,
    width: int,
    height: int,
    subject: str | None = None,
    obj: str | None = None,
) -> str:
    """The predicate of ``subject s`` -> ``object o``: the first rule that fires wins.

    Containment (in / has), resting on top (on), a 4x area ratio (bigger / smaller than), then
    the dominant direction of the centre offset (above / below / left of / right of), then
    next to (touching) or near. Every rule is (piecewise) linear in the two boxes' geometry.
    Given the categories, a person's geometric relation to some objects becomes an action:
    wearing clothing it has, riding a vehicle or horse (sitting on other things) it is on,
    playing an instrument and holding a small object it touches, walking an animal it touches.
    """
    geo = _geometric_predicate(s, o, width, height)
    if subject is None or obj is None or TYPE_OF[subject] != "people":
        return geo
    o_type = TYPE_OF[obj]
    if o_type == "clothing" and geo == "has":
        return "wearing"
    if geo == "on":
        return "riding" if o_type == "vehicles" or obj == "horse" else "sitting on"
    if geo in ("in", "has") or not _touching(s, o, width, height):
        return geo
    if o_type == "instruments":
        return "playing"
    if o_type == "other" and geo == "bigger than":
        return "holding"
    if o_type == "animals":
        return "walking"
    return geo


def _geometric_predicate(s: Box, o: Box, width: int, height: int) -> str:
    inter = _inter(s, o)
    if inter >= 0.85 * s.area:
        return "in"
    if inter >= 0.85 * o.area:
        return "has"
    s_w = s.x2 - s.x1
    overlap_x = min(s.x2, o.x2) - max(s.x1, o.x1)
    s_cy = (s.y1 + s.y2) / 2
    if (
        overlap_x >= 0.6 * s_w
        and s_cy < o.y1
        and o.y1 - 0.02 * height <= s.y2 <= o.y1 + 0.25 * (o.y2 - o.y1)
    ):
        return "on"
    if s.area >= 4 * o.area:
        return "bigger than"
    if 4 * s.area <= o.area:
        return "smaller than"
    dx = ((s.x1 + s.x2) - (o.x1 + o.x2)) / (2 * width)
    dy = ((s.y1 + s.y2) - (o.y1 + o.y2)) / (2 * height)
    if abs(dy) >= 1.5 * abs(dx):
        return "above" if dy < 0 else "below"
    if abs(dx) >= 1.5 * abs(dy):
        return "left of" if dx < 0 else "right of"
    return "next to" if box_gap(s, o) == 0 else "near"


def size_of(box: Sequence[float], width: int, height: int) -> str:
    """small / medium / large by the square root of the box's share of the image area."""
    share = ((box[2] - box[0]) * (box[3] - box[1]) / (width * height)) ** 0.5
    return "small" if share < 0.2 else "large" if share > 0.33 else "medium"


def _clip(x1: float, y1: float, x2: float, y2: float, w: int, h: int) -> tuple[int, ...]:
    x1, y1 = max(0, int(round(x1))), max(0, int(round(y1)))
    x2, y2 = min(w, int(round(x2))), min(h, int(round(y2)))
    return x1, y1, max(x2, x1 + 4), max(y2, y1 + 4)


def _free_box(rng: random.Random, cat: str, w: int, h: int) -> tuple[int, ...]:
    t = TYPE_OF[cat]
    bw = rng.uniform(0.12, 0.4) * w
    bh = bw * {"people": rng.uniform(1.5, 2.4), "vehicles": rng.uniform(0.5, 0.8)}.get(
        t, rng.uniform(0.7, 1.3)
    )
    bh = min(bh, 0.9 * h)
    x1 = rng.uniform(0, w - bw)
    y1 = rng.uniform(0, h - bh)
    return _clip(x1, y1, x1 + bw, y1 + bh, w, h)


def _part_box(rng: random.Random, host: tuple[int, ...], cat: str) -> tuple[int, ...]:
    """A box inside ``host`` (a person): hats/heads at the top, the rest anywhere."""
    hx1, hy1, hx2, hy2 = host
    hw, hh = hx2 - hx1, hy2 - hy1
    bw = rng.uniform(0.3, 0.6) * hw
    bh = rng.uniform(0.15, 0.4) * hh
    x1 = hx1 + rng.uniform(0, hw - bw)
    y1 = hy1 + (0 if cat in ("hat", "head") else rng.uniform(0, hh - bh))
    return (
        int(round(x1)),
        int(round(y1)),
        max(int(round(x1 + bw)), int(round(x1)) + 4),
        max(int(round(y1 + bh)), int(round(y1)) + 4),
    )


def _on_box(
    rng: random.Random, support: tuple[int, ...], cat: str, w: int, h: int
) -> tuple[int, ...]:
    """A box resting on top of ``support``: bottom edge a little below its top edge."""
    sx1, sy1, sx2, sy2 = support
    sw = sx2 - sx1
    bw = rng.uniform(0.3, 0.7) * sw
    bh = bw * (rng.uniform(1.3, 2.0) if TYPE_OF[cat] == "people" else rng.uniform(0.6, 1.1))
    bh = min(bh, max(8.0, sy1 + 0.1 * (sy2 - sy1)))
    x1 = sx1 + rng.uniform(0, sw - bw)
    bottom = sy1 + rng.uniform(0.0, 0.1) * (sy2 - sy1)
    return _clip(x1, bottom - bh, x1 + bw, bottom, w, h)


def _sample_scene(rng: random.Random, k: int, image_id: str, image_size: int) -> Scene:
    aw, ah = rng.choice(_ASPECTS)
    width, height = int(round(aw * image_size)), int(round(ah * image_size))
    setting = rng.choice(CATEGORIES["scene"])
    n = rng.randint(3, 8)
    types = [OBJECT_TYPES[k % len(OBJECT_TYPES)]]  # cycle so every type appears in 7 scenes
    types += rng.choices(list(_TYPE_WEIGHTS), weights=list(_TYPE_WEIGHTS.values()), k=n - 1)
    cats = [rng.choice(CATEGORIES[t]) for t in types]
    # supports, then people, then the rest: "on" placements and clothing/body parts have hosts
    cats.sort(key=lambda c: (c not in _SUPPORTS, TYPE_OF[c] != "people"))
    objects: list[SceneObject] = []
    for i, cat in enumerate(cats):
        t = TYPE_OF[cat]
        people = [o for o in objects if o.type == "people"]
        supports = [o for o in objects if o.category in _SUPPORTS]
        inside = None
        if t in ("clothing", "bodyparts") and people and rng.random() < 0.85:
            host = rng.choice(people)
            box, inside = _part_box(rng, host.box, cat), host.index
        elif t in _CAN_SIT_ON and supports and rng.random() < 0.4:
            box = _on_box(rng, rng.choice(supports).box, cat, width, height)
        else:
            box = _free_box(rng, cat, width, height)
        if box[2] - box[0] < _MIN_SIDE * width or box[3] - box[1] < _MIN_SIDE * height:
            box, inside = _free_box(rng, cat, width, height), None  # clipped too small
        colour = rng.choice(list(COLOURS))
        objects.append(SceneObject(i, cat, colour, size_of(box, width, height), tuple(box), inside))
    relations: list[Relation] = []
    for i in range(len(objects)):
        for j in range(i + 1, len(objects)):
            a, b = objects[i], objects[j]
            ab = relation_score(a.category, b.category, a.as_box(), b.as_box(), width, height)
            ba = relation_score(b.category, a.category, b.as_box(), a.as_box(), width, height)
            if max(ab, ba) <= RELATED_THRESHOLD:
                continue
            # the better-scoring orientation; a fair coin between equal ones (same types)
            s, o = (i, j) if ab > ba or (ab == ba and rng.random() < 0.5) else (j, i)
            so, oo = objects[s], objects[o]
            pred = relation_predicate(
                so.as_box(), oo.as_box(), width, height, so.category, oo.category
            )
            relations.append(Relation(s, o, pred))
    return Scene(image_id, width, height, setting, objects, relations)


def image_id_for(k: int) -> str:
    """Numeric ids like Flickr30k's, the same for Flickr30k Entities, Visual Genome and TSV."""
    return str(9_000_000 + k)


def sample_scenes(n: int, seed: int = 0, image_size: int = 384) -> list[Scene]:
    """``n`` scenes, deterministic for ``seed``; 3-8 objects each, every object type used."""
    if n < 1:
        raise ValueError(f"need at least one scene, got {n}")
    rng = random.Random(f"vlprobe-scenes:{seed}")
    return [_sample_scene(rng, k, image_id_for(k), image_size) for k in range(n)]
