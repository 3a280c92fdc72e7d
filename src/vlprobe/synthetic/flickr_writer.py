"""Write scenes as Flickr30k Entities: ``Sentences/``, ``Annotations/`` and split lists.

Five captions per image mention every object at least once, so each object chain is a
coreference chain across captions. Planted on purpose, because real files have them: phrases
with two types (``a man 's hand`` -> ``bodyparts/people``), ``notvisual`` phrases (chain 0),
a chain with no box (``<nobndbox>1``), scene chains either with a whole-image box or only
flagged ``<scene>1``, and group chains whose boxes are also other chains' boxes.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from vlprobe.synthetic.scenes import Scene, SceneObject

_SIZE_WORDS = {"small": ("small", "little"), "large": ("big", "large"), "medium": ()}
_HYPERNYMS = {
    "people": "person",
    "animals": "animal",
    "vehicles": "vehicle",
    "instruments": "instrument",
    "other": "object",
}
_ACTIVITY = {
    "people": ("standing", "sitting", "walking", "waiting"),
    "clothing": ("hanging", "lying"),
    "bodyparts": ("raised", "resting"),
    "animals": ("running", "sleeping", "standing", "playing"),
    "vehicles": ("parked", "driving", "waiting"),
    "instruments": ("lying", "resting"),
    "other": ("lying", "standing", "resting"),
}
_REL_PHRASE = {
    "wearing": "is wearing",
    "worn by": "is worn by",
    "riding": "is riding",
    "ridden by": "is ridden by",
    "sitting on": "is sitting on",
    "holding": "is holding",
    "held by": "is held by",
    "playing": "is playing",
    "played by": "is played by",
    "walking": "is walking",
    "walked by": "is walked by",
    "in": "is inside",
    "has": "has",
    "on": "is on",
    "under": "is under",
    "bigger than": "is bigger than",
    "smaller than": "is smaller than",
    "above": "is above",
    "below": "is below",
    "left of": "is to the left of",
    "right of": "is to the right of",
    "next to": "is next to",
    "near": "is near",
}
_INVERSE = {
    "wearing": "worn by",
    "riding": "ridden by",
    "sitting on": "under",
    "holding": "held by",
    "playing": "played by",
    "walking": "walked by",
    "in": "has",
    "has": "in",
    "on": "under",
    "bigger than": "smaller than",
    "smaller than": "bigger than",
    "above": "below",
    "below": "above",
    "left of": "right of",
    "right of": "left of",
    "next to": "next to",
    "near": "near",
}
_SETTING_WORDS = {
    "street": (("on", "in"), ("the street", "a street", "a busy street", "the road")),
    "park": (("in", "at"), ("the park", "a park", "a green park", "the grass")),
    "beach": (("on", "at"), ("the beach", "a beach", "a sandy beach", "the sand")),
}
_NOTVISUAL = (
    ("on", "a sunny day"),
    ("during", "the day"),
    ("at", "the same time"),
    ("for", "a while"),
)
_NUMBERS = {2: "two", 3: "three"}
_CHAIN_RE = re.compile(r"\[/EN#(\d+)/")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(chain: int, types: tuple[str, ...], words: list[str]) -> str:
    return f"[/EN#{chain}/{'/'.join(types)} {' '.join(words)}]"


@dataclass
class _Chains:
    """Chain ids of one image: one per object, the setting, and optional group / no-box ones."""

    objects: dict[int, int]
    setting: int
    setting_has_box: bool
    group: tuple[int, list[int]] | None = None  # chain id, member object indexes
    nobox: int | None = None


class _Captioner:
    def __init__(self, rng: random.Random, scene: Scene, chains: _Chains) -> None:
        self.rng = rng
        self.scene = scene
        self.chains = chains

    def object_np(self, obj: SceneObject) -> str:
        rng, t, noun = self.rng, obj.type, obj.category
        chain = self.chains.objects[obj.index]
        r = rng.random()
        host = self.scene.objects[obj.inside] if obj.inside is not None else None
        if host is not None and r < 0.3:  # "a man 's hand": two types, the part's first
            words = ["the", host.category, "'s", noun]
            return _phrase(chain, (t, "people"), words)
        if r < 0.45:
            words = [noun, "in", obj.colour] if t == "people" else [obj.colour, noun]
        elif r < 0.6 and _SIZE_WORDS[obj.size]:
            size = rng.choice(_SIZE_WORDS[obj.size])
            words = [size, noun, "in", obj.colour] if t == "people" else [size, obj.colour, noun]
        elif r < 0.75:
            return _phrase(chain, (t,), ["the", noun])
        elif r < 0.85 and t in _HYPERNYMS:
            words = [_HYPERNYMS[t]]
        else:
            words = [noun]
        return _phrase(chain, (t,), [_article(words[0]), *words])

    def setting_pp(self) -> str:
        preps, nps = _SETTING_WORDS[self.scene.setting]
        np_words = self.rng.choice(nps).split()
        return f"{self.rng.choice(preps)} {_phrase(self.chains.setting, ('scene',), np_words)}"

    def tail(self) -> str:
        r = self.rng.random()
        if self.chains.nobox is not None and r < 0.25:
            who = self.rng.choice((["someone"], ["a", "photographer"], ["a", "stranger"]))
            return f" while {_phrase(self.chains.nobox, ('people',), who)} watches"
        if r < 0.45:
            prep, words = self.rng.choice(_NOTVISUAL)
            return f" {prep} {_phrase(0, ('notvisual',), words.split())}"
        return ""

    def relation_between(self, a: int, b: int) -> str | None:
        for rel in self.scene.relations:
            if (rel.subject, rel.object) == (a, b):
                return rel.predicate
            if (rel.subject, rel.object) == (b, a):
                return _INVERSE[rel.predicate]
        return None

    def caption(
        self, main: SceneObject, other: SceneObject | None, extra: SceneObject | None
    ) -> str:
        rng = self.rng
        parts = [self.object_np(main)]
        pred = self.relation_between(main.index, other.index) if other is not None else None
        if other is not None and pred is not None:
            phrase = _REL_PHRASE[pred]
            if pred == "has" and main.type == "people" and other.type == "clothing":
                phrase = "is wearing"
            parts += [phrase, self.object_np(other)]
        elif other is not None:
            parts += ["and", self.object_np(other), "are"]
        else:
            parts.append(f"is {rng.choice(_ACTIVITY[main.type])}")
        if extra is not None:
            parts += ["with", self.object_np(extra)]
        if parts[-1] == "are" or rng.random() < 0.8:
            parts.append(self.setting_pp())
        return " ".join(parts) + self.tail() + " ."

    def group_caption(self) -> str:
        assert self.chains.group is not None
        chain, members = self.chains.group
        words = (
            [_NUMBERS[len(members)], "people"] if len(members) in _NUMBERS else ["some", "people"]
        )
        verb = self.rng.choice(("standing", "talking", "waiting"))
        return f"{_phrase(chain, ('people',), words)} are {verb} {self.setting_pp()}{self.tail()} ."


def _capitalise(caption: str) -> str:
    """Upper-case the first letter of the first word (inside its bracket if it has one)."""
    if caption.startswith("[/EN#"):
        space = caption.index(" ")
        return caption[: space + 1] + caption[space + 1].upper() + caption[space + 2 :]
    return caption[0].upper() + caption[1:]


def scene_captions(rng: random.Random, scene: Scene, chains: _Chains) -> list[str]:
    """Five captions; every object is mentioned at least once over the five."""
    cap = _Captioner(rng, scene, chains)
    queue = list(scene.objects)
    rng.shuffle(queue)
    mentioned: set[int] = set()
    captions: list[str] = []
    group_slot = rng.randrange(5) if chains.group is not None else -1
    for k in range(5):
        if k == group_slot:
            captions.append(_capitalise(cap.group_caption()))
            continue
        left = [o for o in queue if o.index not in mentioned]
        main = left[0] if left else rng.choice(queue)
        partners = [
            scene.objects[r.object if r.subject == main.index else r.subject]
            for r in scene.relations
            if main.index in (r.subject, r.object)
        ]
        fresh = [o for o in partners if o.index not in mentioned]
        rest = [o for o in left if o.index != main.index]
        if fresh or (partners and rng.random() < 0.6):
            other: SceneObject | None = (fresh or partners)[0]
        elif rest and rng.random() < 0.7:
            other = rest[0]
        else:
            other = None
        used = {main.index} | ({other.index} if other is not None else set())
        leftover = [o for o in left if o.index not in used]
        slots_after = 4 - k - (1 if group_slot > k else 0)
        extra = leftover[0] if len(leftover) > 2 * slots_after else None
        captions.append(_capitalise(cap.caption(main, other, extra)))
        mentioned |= used | ({extra.index} if extra is not None else set())
    return captions


def _bndbox(box: tuple[int, int, int, int]) -> str:
    """0-based half-open pixels -> 1-based inclusive ``<bndbox>``."""
    x1, y1, x2, y2 = box
    return (
        f"\t\t<bndbox>\n\t\t\t<xmin>{x1 + 1}</xmin>\n\t\t\t<ymin>{y1 + 1}</ymin>\n"
        f"\t\t\t<xmax>{x2}</xmax>\n\t\t\t<ymax>{y2}</ymax>\n\t\t</bndbox>\n"
    )


def annotation_xml(scene: Scene, chains: _Chains, mentioned: set[int]) -> str:
    """PASCAL-VOC style ``Annotations/<id>.xml``; setting / no-box chains only if mentioned."""
    group_members = set(chains.group[1]) if chains.group is not None else set()
    out = [
        "<annotation>\n",
        f"\t<filename>{scene.image_id}.png</filename>\n",
        f"\t<size>\n\t\t<width>{scene.width}</width>\n\t\t<height>{scene.height}</height>\n"
        "\t\t<depth>3</depth>\n\t</size>\n",
    ]
    for obj in scene.objects:
        names = f"\t\t<name>{chains.objects[obj.index]}</name>\n"
        if obj.index in group_members and chains.group is not None:
            names += f"\t\t<name>{chains.group[0]}</name>\n"
        out.append(f"\t<object>\n{names}{_bndbox(obj.box)}\t</object>\n")
    if chains.setting in mentioned and chains.setting_has_box:
        whole = (0, 0, scene.width, scene.height)
        out.append(f"\t<object>\n\t\t<name>{chains.setting}</name>\n{_bndbox(whole)}\t</object>\n")
    elif chains.setting in mentioned:
        out.append(
            f"\t<object>\n\t\t<name>{chains.setting}</name>\n"
            "\t\t<nobndbox>0</nobndbox>\n\t\t<scene>1</scene>\n\t</object>\n"
        )
    if chains.nobox is not None and chains.nobox in mentioned:
        out.append(
            f"\t<object>\n\t\t<name>{chains.nobox}</name>\n"
            "\t\t<nobndbox>1</nobndbox>\n\t\t<scene>0</scene>\n\t</object>\n"
        )
    out.append("</annotation>\n")
    return "".join(out)


def split_ids(ids: list[str], seed: int) -> dict[str, list[str]]:
    """About 80/10/10 train/val/test; val and test get at least one image from 3 images on."""
    order = list(ids)
    random.Random(f"vlprobe-splits:{seed}").shuffle(order)
    n = len(order)
    n_small = max(1, round(0.1 * n)) if n >= 3 else 0
    return {
        "train": sorted(order[: n - 2 * n_small]),
        "val": sorted(order[n - 2 * n_small : n - n_small]),
        "test": sorted(order[n - n_small :]),
    }


def write_flickr30k(root: str | os.PathLike[str], scenes: list[Scene], seed: int = 0) -> Path:
    """Write the Flickr30k Entities layout for ``scenes`` under ``root``; returns ``root``."""
    root = Path(root)
    (root / "Sentences").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"vlprobe-flickr:{seed}")
    next_chain = 1
    for scene in scenes:
        objects = {}
        for obj in scene.objects:
            objects[obj.index] = next_chain
            next_chain += 1
        chains = _Chains(objects, next_chain, rng.random() < 0.7)
        next_chain += 1
        people = [o.index for o in scene.objects if o.type == "people"]
        if len(people) >= 2 and rng.random() < 0.5:
            chains.group = (next_chain, people)
            next_chain += 1
        if rng.random() < 0.3:
            chains.nobox = next_chain
            next_chain += 1
        captions = scene_captions(rng, scene, chains)
        mentioned = {int(c) for c in _CHAIN_RE.findall(" ".join(captions))}
        (root / "Sentences" / f"{scene.image_id}.txt").write_text(
            "\n".join(captions) + "\n", encoding="utf-8"
        )
        (root / "Annotations" / f"{scene.image_id}.xml").write_text(
            annotation_xml(scene, chains, mentioned), encoding="utf-8"
        )
    for split, ids in split_ids([s.image_id for s in scenes], seed).items():
        (root / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return root
