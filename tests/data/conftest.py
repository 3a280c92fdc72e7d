"""Small hand-written data sets in the real file formats (see VALUE.md, "Data formats")."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vlprobe.data.types import RegionFeatures

# ---------------------------------------------------------------- Flickr30k Entities
# Image 100 (100 x 80). Chain 1 has two boxes; one box belongs to chains 2 and 5; chain 3 has
# two types; chain 4 is a scene without a box; chain 6's box overlaps no detection; chain 0 is
# notvisual. Phrases sit at the start and end of captions and next to punctuation.
FLICKR_100_SENTENCES = [
    "[/EN#1/people A man] in [/EN#2/clothing a red hat] holds [/EN#3/animals/other a dog] .",
    "[/EN#0/notvisual Nobody] sees [/EN#4/scene the park] near [/EN#1/people him]",
    "[/EN#5/bodyparts/people his arm] , [/EN#6/other a ball] and [/EN#1/people the man]",
]
FLICKR_100_OBJECTS = [  # (names, (xmin, ymin, xmax, ymax) 1-based, or a flag tag)
    (["1"], (1, 1, 20, 40)),
    (["1"], (31, 1, 50, 40)),
    (["2", "5"], (1, 1, 10, 10)),
    (["3"], (61, 41, 90, 70)),
    (["4"], "scene"),
    (["6"], (91, 71, 100, 80)),
]
# detections: the gold boxes of chains 1, 2/5, 3 exactly, plus one unrelated box
FLICKR_100_DETECTIONS = [
    [0, 0, 20, 40],
    [30, 0, 50, 40],
    [0, 0, 10, 10],
    [60, 40, 90, 70],
    [0, 50, 10, 60],
]


def annotation_xml(width: int, height: int, objects: list[tuple[list[str], object]]) -> str:
    parts = [
        "<annotation>",
        "<filename>x.jpg</filename>",
        f"<size>\n<width>{width}</width>\n<height>{height}</height>\n<depth>3</depth>\n</size>",
    ]
    for names, box in objects:
        parts.append("<object>")
        parts += [f"<name>{n}</name>" for n in names]
        if box == "scene":
            parts.append("<nobndbox>1</nobndbox>\n<scene>1</scene>")
        elif box == "nobox":
            parts.append("<nobndbox>1</nobndbox>\n<scene>0</scene>")
        else:
            xmin, ymin, xmax, ymax = box  # type: ignore[misc]
            parts.append(
                f"<bndbox>\n<xmin>{xmin}</xmin>\n<ymin>{ymin}</ymin>\n"
                f"<xmax>{xmax}</xmax>\n<ymax>{ymax}</ymax>\n</bndbox>"
            )
        parts.append("</object>")
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def write_flickr_image(
    root: Path,
    image_id: str,
    sentences: list[str],
    objects: list[tuple[list[str], object]],
    size: tuple[int, int] = (100, 80),
) -> None:
    (root / "Sentences").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Sentences" / f"{image_id}.txt").write_text("\n".join(sentences) + "\n")
    (root / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(*size, objects))


def regions(
    image_id: str, boxes: list[list[float]], size: tuple[int, int] = (100, 80), dim: int = 4
) -> RegionFeatures:
    n = len(boxes)
    feats = np.arange(n * dim, dtype=np.float32).reshape(n, dim)
    return RegionFeatures(
        image_id, size[0], size[1], np.asarray(boxes, np.float32).reshape(n, 4), feats
    )


@pytest.fixture
def flickr_root(tmp_path: Path) -> Path:
    """Images 100, 200 (train), 300 (val), 400 (test)."""
    root = tmp_path / "flickr"
    write_flickr_image(root, "100", FLICKR_100_SENTENCES, FLICKR_100_OBJECTS)
    write_flickr_image(root, "200", ["[/EN#7/people A woman] runs ."], [(["7"], (11, 11, 30, 30))])
    write_flickr_image(root, "300", ["[/EN#8/animals A cat] sleeps ."], [(["8"], (1, 1, 50, 50))])
    write_flickr_image(root, "400", ["[/EN#9/vehicles A car] ."], [(["9"], (1, 1, 60, 40))])
    (root / "train.txt").write_text("100\n200\n")
    (root / "val.txt").write_text("300\n")
    (root / "test.txt").write_text("400\n")
    return root


@pytest.fixture
def flickr_features() -> dict[str, RegionFeatures]:
    return {
        "100": regions("100", FLICKR_100_DETECTIONS),
        "200": regions("200", [[10, 10, 30, 30], [50, 50, 60, 60]]),
        "300": regions("300", [[0, 0, 50, 50]]),
        "400": regions("400", [[0, 0, 60, 40]]),
    }


# ---------------------------------------------------------------- Visual Genome
def vg_object(oid: int, box: tuple[int, int, int, int], names: list[str] | str) -> dict:
    x, y, w, h = box
    key = "name" if isinstance(names, str) else "names"
    return {"object_id": oid, "x": x, "y": y, "w": w, "h": h, key: names, "synsets": []}


VG_OBJECTS = {  # object id -> (x, y, w, h), names
    10: ((0, 0, 20, 40), ["Man"]),
    11: ((30, 0, 20, 40), "horse"),
    12: ((0, 0, 10, 10), ["hat", "cap"]),
    13: ((60, 40, 30, 30), "grass"),  # only inside relationships.json
}


def write_vg(root: Path, image_data: list, objects: list, relationships: list) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "image_data.json").write_text(json.dumps(image_data))
    (root / "objects.json").write_text(json.dumps(objects))
    (root / "relationships.json").write_text(json.dumps(relationships))
    return root


def vg_rel(rid: int, pred: str, s: int, o: int) -> dict:
    return {
        "relationship_id": rid,
        "predicate": pred,
        "synsets": [],
        "subject": vg_object(s, *VG_OBJECTS[s]),
        "object": vg_object(o, *VG_OBJECTS[o]),
    }


@pytest.fixture
def vg_root(tmp_path: Path) -> Path:
    """Image 1 (keyed "image_id") with 4 objects and 3 distinct relations; image 2 (keyed "id")."""
    return write_vg(
        tmp_path / "vg",
        image_data=[
            {"image_id": 1, "width": 100, "height": 80, "url": "x"},
            {"id": 2, "width": 50, "height": 50, "url": "y"},
        ],
        objects=[
            {"image_id": 1, "objects": [vg_object(o, *VG_OBJECTS[o]) for o in (10, 11, 12)]},
            {"id": 2, "objects": [vg_object(20, (0, 0, 10, 10), ["Dog "])]},
        ],
        relationships=[
            {
                "image_id": 1,
                "relationships": [
                    vg_rel(100, "ON", 10, 11),
                    vg_rel(101, "On ", 10, 11),  # same pair again: the first predicate wins
                    vg_rel(102, "sitting  on", 12, 10),
                    vg_rel(103, "Standing IN", 11, 13),
                    vg_rel(104, "is", 10, 10),  # self-relation
                ],
            },
            {"id": 2, "relationships": []},
        ],
    )


@pytest.fixture
def vg_features() -> dict[str, RegionFeatures]:
    return {
        "1": regions("1", [[0, 0, 20, 40], [30, 0, 50, 40], [0, 0, 10, 10], [60, 40, 90, 70]]),
        "2": regions("2", [[0, 0, 10, 10]], size=(50, 50)),
    }


@pytest.fixture
def write_text(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


@pytest.fixture
def flickr_writer() -> Callable[..., None]:
    return write_flickr_image


@pytest.fixture
def make_regions() -> Callable[..., RegionFeatures]:
    return regions


@pytest.fixture
def vg_writer() -> Callable[..., Path]:
    return write_vg
