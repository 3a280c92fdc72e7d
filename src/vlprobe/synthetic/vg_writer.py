"""Write scenes as Visual Genome: ``objects.json``, ``relationships.json``, ``image_data.json``.

The same images and boxes as the Flickr30k Entities files. Predicates are written in the messy
surface forms real files have ("Left of", "left  of ", "LEFT OF"), and relationship subjects
and objects sometimes carry ``"name": "..."`` instead of ``"names": [...]``, so readers must
normalise; every surface form normalises to one of ``scenes.PREDICATES``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from vlprobe.synthetic.scenes import Scene, SceneObject


def predicate_variants(predicate: str) -> tuple[str, ...]:
    """Surface forms that lower-case / whitespace normalisation maps back to ``predicate``."""
    words = predicate.split()
    return (
        predicate,
        predicate,
        predicate.capitalize(),
        predicate.upper(),
        "  ".join(words) + " ",
        " " + " ".join(w.capitalize() for w in words),
    )


def _object_dict(obj: SceneObject, object_id: int, single_name: bool = False) -> dict[str, Any]:
    x1, y1, x2, y2 = obj.box
    out: dict[str, Any] = {"object_id": object_id, "x": x1, "y": y1, "w": x2 - x1, "h": y2 - y1}
    if single_name:
        out["name"] = obj.category
    else:
        out["names"] = [obj.category]
    out["synsets"] = [f"{obj.category}.n.01"]
    return out


def write_visual_genome(root: str | os.PathLike[str], scenes: list[Scene], seed: int = 0) -> Path:
    """Write the three Visual Genome JSON files for ``scenes`` under ``root``; returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"vlprobe-vg:{seed}")
    image_data, objects, relationships = [], [], []
    next_object = next_relation = 1
    for scene in scenes:
        image_id = int(scene.image_id)
        ids = {o.index: next_object + k for k, o in enumerate(scene.objects)}
        next_object += len(scene.objects)
        image_data.append(
            {
                "image_id": image_id,
                "width": scene.width,
                "height": scene.height,
                "url": f"images/{scene.image_id}.png",
                "coco_id": None,
                "flickr_id": image_id,
            }
        )
        objects.append(
            {
                "image_id": image_id,
                "objects": [_object_dict(o, ids[o.index]) for o in scene.objects],
            }
        )
        rels = []
        for rel in scene.relations:
            s, o = scene.objects[rel.subject], scene.objects[rel.object]
            rels.append(
                {
                    "relationship_id": next_relation,
                    "predicate": rng.choice(predicate_variants(rel.predicate)),
                    "synsets": [],
                    "subject": _object_dict(s, ids[s.index], rng.random() < 0.25),
                    "object": _object_dict(o, ids[o.index], rng.random() < 0.25),
                }
            )
            next_relation += 1
        relationships.append({"image_id": image_id, "relationships": rels})
    for name, data in (
        ("image_data.json", image_data),
        ("objects.json", objects),
        ("relationships.json", relationships),
    ):
        (root / name).write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    return root
