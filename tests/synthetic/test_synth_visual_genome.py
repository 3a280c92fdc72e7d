"""Visual Genome files: messy surface forms that normalise to the planted truth: pairs annotated
by category affinities plus closeness, predicates derived from the boxes and categories."""

from __future__ import annotations

import json
from collections import Counter

from vlprobe.data.visual_genome import load_visual_genome, normalize_predicate
from vlprobe.synthetic import DemoDataPaths
from vlprobe.synthetic.scenes import (
    PREDICATES,
    RELATED_GAP,
    TYPE_OF,
    Scene,
    are_related,
    box_gap,
    relation_predicate,
    relation_score,
)


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


def test_relations_rederived_from_categories_and_boxes(demo: DemoDataPaths) -> None:
    """Each pair is annotated exactly when its category affinities plus closeness clear the
    threshold, in its better-scoring orientation, with the predicate its boxes and categories
    give."""
    images = load_visual_genome(demo.visual_genome)
    used: Counter[str] = Counter()
    unrelated = 0
    for image in images.values():
        w, h = image.width, image.height
        name = {i: o.names[0] for i, o in image.objects.items()}
        box = {i: o.box for i, o in image.objects.items()}
        pairs = {(r.subject_id, r.object_id) for r in image.relations}
        for r in image.relations:
            s, o = r.subject_id, r.object_id
            assert r.predicate == relation_predicate(box[s], box[o], w, h, name[s], name[o])
            forward = relation_score(name[s], name[o], box[s], box[o], w, h)
            assert forward >= relation_score(name[o], name[s], box[o], box[s], w, h)
            used[r.predicate] += 1
        ids = sorted(image.objects)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                related = (a, b) in pairs or (b, a) in pairs
                assert related == are_related(name[a], box[a], name[b], box[b], w, h)
                unrelated += not related
    assert len(used) >= 12
    assert {"wearing", "riding", "playing"} <= set(used)
    assert unrelated > 0.8 * sum(used.values())


def test_relatedness_follows_categories_more_than_closeness(demo: DemoDataPaths) -> None:
    """People are mostly related to clothing, wherever it is; clothing never to clothing; many
    touching pairs are unrelated and many related pairs do not touch."""
    images = load_visual_genome(demo.visual_genome)
    by_types: Counter[tuple[str, str, bool]] = Counter()
    touching: Counter[tuple[bool, bool]] = Counter()
    for image in images.values():
        pairs = {frozenset((r.subject_id, r.object_id)) for r in image.relations}
        ids = sorted(image.objects)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                oa, ob = image.objects[a], image.objects[b]
                related = frozenset((a, b)) in pairs
                ta, tb = sorted((TYPE_OF[oa.names[0]], TYPE_OF[ob.names[0]]))
                by_types[(ta, tb, related)] += 1
                close = box_gap(oa.box, ob.box) <= RELATED_GAP * max(image.width, image.height)
                touching[(close, related)] += 1
    worn = by_types[("clothing", "people", True)]
    assert worn > 3 * by_types[("clothing", "people", False)]
    assert by_types[("clothing", "clothing", False)] > 0
    assert by_types[("clothing", "clothing", True)] == 0
    assert touching[(True, False)] > 0.2 * touching[(True, True)]
    assert touching[(False, True)] > 0.1 * touching[(True, True)]
