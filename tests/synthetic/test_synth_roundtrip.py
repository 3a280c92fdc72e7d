"""The demo data goes through the same builders as real data, with nothing dropped by accident."""

from __future__ import annotations

from collections import Counter

from vlprobe.data.builders import (
    BuildStats,
    build_flickr_examples,
    build_senteval_examples,
    build_vg_examples,
    flickr_captions_by_image,
)
from vlprobe.data.region_features import load_region_features
from vlprobe.data.types import FLICKR_TYPES
from vlprobe.synthetic import DemoDataPaths
from vlprobe.synthetic.scenes import PREDICATES


def test_flickr_examples(demo: DemoDataPaths) -> None:
    features = load_region_features(demo.features)
    stats = BuildStats()
    examples = build_flickr_examples(demo.flickr30k, features, image_dir=demo.images, stats=stats)
    assert stats["gold_boxes_untied"] == 0 and stats["images_skipped"] == 0
    assert len(examples) == 5 * len(features)
    assert stats["phrases_notvisual"] > 0 and stats["phrases_no_box"] > 0
    assert {r.category for e in examples for r in e.regions} == set(FLICKR_TYPES)
    assert all(e.inputs.image_path is not None for e in examples)
    assert all(e.phrases for e in examples)


def test_vg_examples(demo: DemoDataPaths) -> None:
    features = load_region_features(demo.features)
    stats = BuildStats()
    examples = build_vg_examples(
        demo.visual_genome,
        features,
        captions=flickr_captions_by_image(demo.flickr30k),
        stats=stats,
    )
    assert stats["objects_untied"] == 0 and stats["images_skipped"] == 0
    predicates = Counter(r.predicate for e in examples for r in e.relations)
    assert predicates[None] > 0  # unrelated pairs for identification
    assert set(predicates) - {None} <= set(PREDICATES) and len(predicates) >= 9
    assert all(e.inputs.words for e in examples)


def test_senteval_examples(demo: DemoDataPaths) -> None:
    for path in sorted(demo.senteval.glob("*.txt")):
        examples = build_senteval_examples(path)
        assert len(examples) == 240
        assert Counter(e.split for e in examples) == {"train": 192, "val": 24, "test": 24}
