"""Flickr30k Entities files: all types, planted format quirks, chains agreeing across files."""

from __future__ import annotations

from collections import Counter

from vlprobe.data.flickr30k import Flickr30kEntities, read_annotation, read_sentences
from vlprobe.data.types import FLICKR_TYPES, SPLITS
from vlprobe.synthetic import DemoDataPaths
from vlprobe.synthetic.scenes import Scene


def test_every_type_and_quirk_present(demo: DemoDataPaths) -> None:
    ds = Flickr30kEntities(demo.flickr30k)
    types: Counter[str] = Counter()
    multi = notvisual = 0
    for image_id in ds.image_ids():
        for cap in ds.captions(image_id):
            for ph in cap.phrases:
                types.update(ph.types)
                multi += len(ph.types) > 1
                notvisual += ph.chain_id == "0" and ph.types == ("notvisual",)
    assert set(FLICKR_TYPES) <= set(types)
    assert multi > 0 and notvisual > 0
    anns = [ds.annotation(i) for i in ds.image_ids()]
    assert any(a.nobox for a in anns) and any(a.scene for a in anns)
    assert any(len(boxes) > 1 for a in anns for boxes in a.boxes.values())  # group chains
    shared = Counter(b for a in anns for boxes in a.boxes.values() for b in set(boxes))
    assert max(shared.values()) > 1  # a box of two chains


def test_chains_agree_between_sentences_and_annotations(demo: DemoDataPaths) -> None:
    ds = Flickr30kEntities(demo.flickr30k)
    for image_id in ds.image_ids():
        captions = read_sentences(demo.flickr30k / "Sentences" / f"{image_id}.txt")
        ann = read_annotation(demo.flickr30k / "Annotations" / f"{image_id}.xml")
        assert len(captions) == 5
        mentions = Counter(p.chain_id for c in captions for p in c.phrases if p.chain_id != "0")
        annotated = set(ann.boxes) | ann.nobox | ann.scene
        assert set(mentions) == annotated, image_id
        assert max(mentions.values()) >= 2  # coreference across captions
        first_type: dict[str, str] = {}
        for cap in captions:
            assert cap.words[-1] == "."
            for ph in cap.phrases:
                assert first_type.setdefault(ph.chain_id, ph.types[0]) == ph.types[0]
                assert list(cap.words[ph.word_span[0] : ph.word_span[1]]) == list(ph.words)
        for boxes in ann.boxes.values():
            for b in boxes:
                assert 0 <= b.x1 < b.x2 <= ann.width and 0 <= b.y1 < b.y2 <= ann.height


def test_objects_and_sizes_match_scenes(demo: DemoDataPaths, demo_scenes: list[Scene]) -> None:
    ds = Flickr30kEntities(demo.flickr30k)
    assert ds.image_ids() == sorted(s.image_id for s in demo_scenes)
    for scene in demo_scenes:
        ann = ds.annotation(scene.image_id)
        assert (ann.width, ann.height) == (scene.width, scene.height)
        assert 3 <= len(scene.objects) <= 8
        gold = {(o.box[0], o.box[1], o.box[2], o.box[3]) for o in scene.objects}
        read = {(b.x1, b.y1, b.x2, b.y2) for boxes in ann.boxes.values() for b in boxes}
        assert gold <= read  # 1-based inclusive in the XML, 0-based half-open after reading


def test_splits_partition_the_images(demo: DemoDataPaths) -> None:
    ds = Flickr30kEntities(demo.flickr30k)
    ids = {s: ds.split_ids(s) for s in SPLITS}
    assert sorted(sum(ids.values(), [])) == ds.image_ids()
    n = len(ds.image_ids())
    assert len(ids["train"]) == n - 2 * round(0.1 * n)
    assert len(ids["val"]) == len(ids["test"]) == round(0.1 * n)
