"""Visual Genome files: messy surface forms that normalise to the planted, box-derived truth."""

from __future__ import annotations

import json
from collections import Counter

from vlprobe.data.visual_genome import load_visual_genome, normalize_predicate
from vlprobe.synthetic import DemoDataPaths
from vlprobe.synthetic.scenes import PREDICATES, Scene, are_related, relation_predicate


def test_same_images_as_flickr(demo: DemoDataPaths, demo_scenes: list[Scene]) -> None:
    images = load_visual_genome(demo.visual_genome)
    assert sorted(images) == sorted(s.image_id for s in demo_scenes)
    for scene in demo_scenes:
        image = images[scene.image_id]
        assert (image.width, image.height) == (scene.width, scene.height)
        assert sorted(o.names[0] for o in image.objects.values()) == sorted(
            o.category for o in scene.objects
        )


def test_raw_predicates_need_normalising(demo: DemoDataPaths) -> None:
    raw = json.loads((demo.visual_genome / "relationships.json").read_text())
    predicates = [r["predicate"] for e in raw for r in e["relationships"]]
    assert any(p != normalize_predicate(p) for p in predicates)
    assert {normalize_predicate(p) for p in predicates} <= set(PREDICATES)
    keys = Counter(k for e in raw for r in e["relationships"] for k in r["subject"])
    assert keys["name"] > 0 and keys["names"] > 0


def test_predicates_rederived_from_boxes(demo: DemoDataPaths) -> None:
    images = load_visual_genome(demo.visual_genome)
    used: Counter[str] = Counter()
    unrelated = 0
    for image in images.values():
        pairs = {(r.subject_id, r.object_id) for r in image.relations}
        for r in image.relations:
            s, o = image.objects[r.subject_id].box, image.objects[r.object_id].box
            assert r.predicate == relation_predicate(s, o, image.width, image.height)
            used[r.predicate] += 1
        ids = sorted(image.objects)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                related = (a, b) in pairs or (b, a) in pairs
                box_a, box_b = image.objects[a].box, image.objects[b].box
                assert related == are_related(box_a, box_b, image.width, image.height)
                unrelated += not related
    assert len(used) >= 8
    assert unrelated > 0.2 * sum(used.values())
