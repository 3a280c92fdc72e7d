import json
from pathlib import Path

import numpy as np
import pytest

from vlprobe.data.builders import (
    BuildStats,
    build_flickr_examples,
    build_senteval_examples,
    build_vg_examples,
    flickr_captions_by_image,
)
from vlprobe.data.errors import DataFormatError, ProblemLog
from vlprobe.data.examples import PhraseSpan, Region, RelationPair
from vlprobe.data.types import Box


# ---------------------------------------------------------------- Flickr30k Entities
def test_flickr_coreference_pairs(flickr_root: Path, flickr_features) -> None:
    stats = BuildStats()
    exs = build_flickr_examples(flickr_root, flickr_features, stats=stats)
    assert [(e.example_id, e.group_id, e.split) for e in exs] == [
        ("100#0", "100", "train"),
        ("100#1", "100", "train"),
        ("100#2", "100", "train"),
        ("200#0", "200", "train"),
        ("300#0", "300", "val"),
        ("400#0", "400", "test"),
    ]
    e0, e1, e2 = exs[:3]
    assert e0.inputs.words == ["A", "man", "in", "a", "red", "hat", "holds", "a", "dog", "."]
    assert e0.inputs.image_size == (100, 80)
    np.testing.assert_array_equal(e0.inputs.region_boxes, flickr_features["100"].boxes)
    np.testing.assert_array_equal(e0.inputs.region_features, flickr_features["100"].features)
    # one Region per gold box of each visual chain the caption mentions
    assert e0.regions == [
        Region(0, Box(0, 0, 20, 40), "people", "1"),
        Region(1, Box(30, 0, 50, 40), "people", "1"),
        Region(2, Box(0, 0, 10, 10), "clothing", "2"),
        Region(3, Box(60, 40, 90, 70), "animals", "3"),
    ]
    assert e0.phrases == [
        PhraseSpan(0, 2, ("people",), "1", (0, 1)),
        PhraseSpan(3, 6, ("clothing",), "2", (2,)),
        PhraseSpan(7, 9, ("animals", "other"), "3", (3,)),
    ]
    # notvisual (chain 0) and the scene chain without a box are dropped; "him" keeps chain 1
    assert e1.inputs.words == ["Nobody", "sees", "the", "park", "near", "him"]
    assert e1.phrases == [PhraseSpan(5, 6, ("people",), "1", (0, 1))]
    assert [r.key for r in e1.regions] == ["1", "1"]
    # chain 5 shares chain 2's box (category from this caption); chain 6's box did not tie
    assert e2.regions == [
        Region(2, Box(0, 0, 10, 10), "bodyparts", "5"),
        Region(0, Box(0, 0, 20, 40), "people", "1"),
        Region(1, Box(30, 0, 50, 40), "people", "1"),
    ]
    assert e2.phrases == [
        PhraseSpan(0, 2, ("bodyparts", "people"), "5", (0,)),
        PhraseSpan(6, 8, ("people",), "1", (1, 2)),
    ]
    # image 200: gold box (10, 10, 30, 30) ties to detection 0
    assert exs[3].regions == [Region(0, Box(10, 10, 30, 30), "people", "7")]
    assert stats["phrases_notvisual"] == 1
    assert stats["phrases_no_box"] == 1
    assert stats["phrases_untied"] == 1
    assert stats["gold_boxes_untied"] == 1
    assert stats["phrases_kept"] == 9 and stats["examples"] == 6


def test_flickr_add_mode_ties_every_gold_box(flickr_root: Path, flickr_features) -> None:
    exs = build_flickr_examples(flickr_root, flickr_features, splits=("train",), tie_mode="add")
    e2 = exs[2]
    boxes = e2.inputs.region_boxes
    # 5 detections + 5 distinct gold boxes (chains 2 and 5 share one)
    assert boxes.shape == (10, 4) and e2.inputs.region_features.shape == (10, 4)
    # gold rows in chain order: 1 -> 5, 6; 2 and 5 -> 7; 3 -> 8; 6 -> 9 (ties only when added)
    assert [(r.key, r.region_index) for r in e2.regions] == [("5", 7), ("6", 9), ("1", 5), ("1", 6)]
    assert [(p.chain_id, p.regions) for p in e2.phrases] == [
        ("5", (0,)),
        ("6", (1,)),
        ("1", (2, 3)),
    ]
    np.testing.assert_array_equal(boxes[9], [90, 70, 100, 80])
    np.testing.assert_allclose(  # overlaps nothing: the mean of the detected features
        e2.inputs.region_features[9], flickr_features["100"].features.mean(axis=0)
    )


def test_flickr_mismatched(flickr_root: Path, flickr_features) -> None:
    stats = BuildStats()
    exs = build_flickr_examples(flickr_root, flickr_features, mismatched=True, seed=3, stats=stats)
    by_id = {e.example_id: e for e in exs}
    # train has 100 and 200: they swap captions; val and test have one image: unpaired
    assert sorted(by_id) == ["100#0", "200#0", "200#1", "200#2"]
    assert by_id["100#0"].inputs.words == ["A", "woman", "runs", "."]
    assert by_id["200#1"].inputs.words == ["Nobody", "sees", "the", "park", "near", "him"]
    assert all(e.phrases == [] for e in exs)
    assert [r.key for r in by_id["100#0"].regions] == ["1", "1", "2", "3", "5"]
    assert by_id["100#0"].regions[4].category == "bodyparts"
    np.testing.assert_array_equal(by_id["200#0"].inputs.region_boxes, flickr_features["200"].boxes)
    assert stats["images_unpaired"] == 2


def test_flickr_derangement_is_deterministic_and_has_no_fixed_point(
    tmp_path: Path, flickr_writer, make_regions
) -> None:
    ids = [str(i) for i in range(10)]
    for i in ids:
        flickr_writer(tmp_path, i, [f"[/EN#1/people person{i}] ."], [(["1"], (1, 1, 10, 10))])
    (tmp_path / "train.txt").write_text("\n".join(ids))
    feats = {i: make_regions(i, [[0, 0, 10, 10]]) for i in ids}

    def pairing(seed: int) -> dict[str, str]:
        exs = build_flickr_examples(tmp_path, feats, ("train",), mismatched=True, seed=seed)
        return {e.group_id: e.inputs.words[0].removeprefix("person") for e in exs}

    a = pairing(0)
    assert a == pairing(0) and a != pairing(1)
    assert sorted(a.values()) == ids and all(k != v for k, v in a.items())


def test_flickr_image_path(flickr_root: Path, flickr_features, tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "200.jpg").write_bytes(b"")
    exs = build_flickr_examples(
        flickr_root, flickr_features, ("train",), image_dir=tmp_path / "img"
    )
    assert [e.inputs.image_path for e in exs] == [None] * 3 + [str(tmp_path / "img" / "200.jpg")]


def test_flickr_missing_features_and_files(flickr_root: Path, flickr_features) -> None:
    del flickr_features["200"]
    (flickr_root / "Sentences" / "300.txt").unlink()
    with pytest.raises(DataFormatError) as info:
        build_flickr_examples(flickr_root, flickr_features)
    assert str(info.value).startswith(
        f"{flickr_root / 'train.txt'}, image 200: no region features for this image"
    )
    log, stats = ProblemLog(), BuildStats()
    exs = build_flickr_examples(
        flickr_root, flickr_features, strict=False, problems=log, stats=stats
    )
    assert sorted({e.group_id for e in exs}) == ["100", "400"]
    assert [p.location for p in log.problems] == ["image 200", "image 300"]
    assert "Sentences/300.txt does not exist" in log.problems[1].message
    assert stats["images_skipped"] == 2


def test_flickr_size_mismatch(flickr_root: Path, flickr_features, make_regions) -> None:
    flickr_features["300"] = make_regions("300", [[0, 0, 50, 50]], size=(200, 160))
    with pytest.raises(DataFormatError, match="image 300: region features are for a 200x160"):
        build_flickr_examples(flickr_root, flickr_features)


def test_flickr_bad_caption_is_skipped_and_reported(flickr_root: Path, flickr_features) -> None:
    path = flickr_root / "Sentences" / "100.txt"
    path.write_text(path.read_text().replace("[/EN#1/people him]", "[/EN#1/people him"))
    with pytest.raises(DataFormatError, match=r"100\.txt, line 2, column 59: '\[' is never closed"):
        build_flickr_examples(flickr_root, flickr_features)
    log = ProblemLog()
    exs = build_flickr_examples(flickr_root, flickr_features, strict=False, problems=log)
    assert [e.example_id for e in exs][:3] == ["100#0", "100#2", "200#0"]
    assert len(log) == 1


def test_flickr_captions_by_image(flickr_root: Path) -> None:
    caps = flickr_captions_by_image(flickr_root)
    assert caps["100"] == "A man in a red hat holds a dog ."
    assert caps["300"] == "A cat sleeps ."
    assert len(caps) == 4


# ---------------------------------------------------------------- Visual Genome
def test_vg_relations_and_balanced_unrelated_pairs(vg_root: Path, vg_features) -> None:
    stats = BuildStats()
    exs = build_vg_examples(vg_root, vg_features, captions={"1": "a man on a horse"}, stats=stats)
    assert [(e.example_id, e.group_id) for e in exs] == [("1", "1"), ("2", "2")]
    ex = exs[0]
    assert ex.inputs.words == ["a", "man", "on", "a", "horse"]
    assert exs[1].inputs.words == []
    assert ex.regions == [
        Region(0, Box(0, 0, 20, 40), "man", "10"),
        Region(1, Box(30, 0, 50, 40), "horse", "11"),
        Region(2, Box(0, 0, 10, 10), "hat", "12"),
        Region(3, Box(60, 40, 90, 70), "grass", "13"),
    ]
    related = [r for r in ex.relations if r.predicate is not None]
    assert related == [  # duplicate (10, 11) keeps the first predicate; self-relation dropped
        RelationPair(0, 1, "on"),
        RelationPair(2, 0, "sitting on"),
        RelationPair(1, 3, "standing in"),
    ]
    unrelated = [(r.subject, r.object) for r in ex.relations if r.predicate is None]
    assert len(unrelated) == 3 and len(set(unrelated)) == 3
    linked = {(r.subject, r.object) for r in related} | {(r.object, r.subject) for r in related}
    assert not set(unrelated) & linked and all(s != o for s, o in unrelated)
    assert stats["relations_self"] == 1 and stats["relations_duplicate"] == 1
    assert stats["relations_related"] == 3 and stats["relations_unrelated"] == 3

    again = build_vg_examples(vg_root, vg_features)
    assert again[0].relations == ex.relations  # deterministic by seed
    many = build_vg_examples(vg_root, vg_features, unrelated_ratio=10.0, stats=(st := BuildStats()))
    assert sum(r.predicate is None for r in many[0].relations) == 6  # every candidate
    assert st["unrelated_shortfall"] == 24


def test_vg_untied_objects_and_shared_detections(vg_root: Path, vg_features, make_regions) -> None:
    # man (10) and hat (12) both tie to detection 0; horse and grass are not detected
    vg_features["1"] = make_regions("1", [[0, 0, 20, 40], [0, 0, 30, 40]])
    stats = BuildStats()
    ex = build_vg_examples(vg_root, vg_features, iou_threshold=0.1, stats=stats)[0]
    assert [(r.key, r.region_index) for r in ex.regions] == [("10", 0), ("12", 0)]
    assert ex.relations == []  # 12 -> 10 would pair one input region with itself
    assert stats["objects_untied"] == 2 and stats["relations_same_region"] == 1
    assert stats["relations_untied"] == 3


def test_vg_max_objects_prefers_related(vg_root: Path, vg_features) -> None:
    vg_writer_objects = json.loads((vg_root / "objects.json").read_text())
    vg_writer_objects[0]["objects"].insert(
        0, {"object_id": 1, "x": 0, "y": 0, "w": 5, "h": 5, "names": ["sky"]}
    )
    (vg_root / "objects.json").write_text(json.dumps(vg_writer_objects))
    stats = BuildStats()
    ex = build_vg_examples(vg_root, vg_features, max_objects=3, stats=stats)[0]
    assert [r.key for r in ex.regions] == ["10", "11", "12"]  # unrelated object 1 goes first
    assert [r.predicate for r in ex.relations] == ["on", "sitting on", None, None]
    assert stats["objects_over_max"] == 2


def test_vg_split_by_stable_image_hash(tmp_path: Path, vg_writer, make_regions) -> None:
    n = 300
    root = vg_writer(
        tmp_path / "vgbig",
        image_data=[{"image_id": i, "width": 10, "height": 10} for i in range(n)],
        objects=[{"image_id": i, "objects": []} for i in range(n)],
        relationships=[],
    )
    feats = {str(i): make_regions(str(i), [[0, 0, 5, 5]], size=(10, 10)) for i in range(n)}
    a = {e.group_id: e.split for e in build_vg_examples(root, feats, seed=0)}
    b = {e.group_id: e.split for e in build_vg_examples(root, feats, seed=7)}
    assert a == b and len(a) == n
    counts = {s: list(a.values()).count(s) for s in ("train", "val", "test")}
    assert 200 < counts["train"] < 280 and counts["val"] > 10 and counts["test"] > 10
    sub = {k: feats[k] for k in list(feats)[:50]}
    part = build_vg_examples(root, sub, strict=False, problems=ProblemLog())
    assert all(a[e.group_id] == e.split for e in part)  # independent of the other images
    assert {e.split for e in build_vg_examples(root, feats, split_fractions=(1, 0, 0))} == {"train"}
    with pytest.raises(ValueError, match="split_fractions"):
        build_vg_examples(root, feats, split_fractions=(0.5, 0.1, 0.1))


def test_vg_mismatched_captions(tmp_path: Path, vg_writer, make_regions) -> None:
    n = 40
    root = vg_writer(
        tmp_path / "vgm",
        image_data=[{"id": i, "width": 10, "height": 10} for i in range(n)],
        objects=[],
        relationships=[],
    )
    feats = {str(i): make_regions(str(i), [[0, 0, 5, 5]], size=(10, 10)) for i in range(n)}
    caps = {str(i): f"caption {i}" for i in range(n)}
    exs = build_vg_examples(root, feats, captions=caps, mismatched=True)
    split_of = {e.group_id: e.split for e in exs}
    for e in exs:
        if e.inputs.words:
            other = e.inputs.words[1]
            assert other != e.group_id and split_of[other] == e.split
    with pytest.raises(ValueError, match="needs captions"):
        build_vg_examples(root, feats, mismatched=True)


def test_vg_missing_features(vg_root: Path, vg_features) -> None:
    del vg_features["2"]
    with pytest.raises(DataFormatError, match=r"image_data\.json, image 2: no region features"):
        build_vg_examples(vg_root, vg_features)
    log = ProblemLog()
    assert len(build_vg_examples(vg_root, vg_features, strict=False, problems=log)) == 1
    assert len(log) == 1


def test_vg_add_mode(vg_root: Path, vg_features, make_regions) -> None:
    vg_features["1"] = make_regions("1", [[0, 0, 20, 40]])
    ex = build_vg_examples(vg_root, vg_features, tie_mode="add")[0]
    assert ex.inputs.region_boxes.shape == (5, 4)
    assert [r.region_index for r in ex.regions] == [1, 2, 3, 4]
    assert len([r for r in ex.relations if r.predicate]) == 3


# ---------------------------------------------------------------- SentEval
def test_senteval_examples(write_text) -> None:
    path = write_text(
        "bigram_shift.txt",
        "tr\tO\tA cat sat .\nva\tI\tSat cat a .\ntr\tO\tA cat sat .\nte\tO\tDogs bark .\n",
    )
    exs = build_senteval_examples(path)
    assert [(e.example_id, e.split, e.label) for e in exs] == [
        ("bigram_shift:1", "train", "O"),
        ("bigram_shift:2", "val", "I"),
        ("bigram_shift:3", "train", "O"),
        ("bigram_shift:4", "test", "O"),
    ]
    assert exs[0].group_id == exs[2].group_id == "A cat sat ."  # same sentence, same group
    assert exs[0].inputs.words == ["A", "cat", "sat", "."]
    assert exs[0].inputs.region_features is None and exs[0].regions == []


def test_senteval_sentence_in_two_splits(write_text) -> None:
    path = write_text("t.txt", "tr\tO\tA cat sat .\nva\tI\tB .\nte\tO\tA cat sat .\n")
    with pytest.raises(DataFormatError) as info:
        build_senteval_examples(path)
    text = str(info.value)
    assert text.startswith(f"{path}, line 3: this test sentence is also a train sentence at line 1")
    log = ProblemLog()
    assert [e.example_id for e in build_senteval_examples(path, strict=False, problems=log)] == [
        "t:1",
        "t:2",
    ]
    assert len(log) == 1


def test_vg_relationships_json_errors_reach_builder(vg_root: Path, vg_features) -> None:
    rel = json.loads((vg_root / "relationships.json").read_text())
    rel[0]["relationships"][0]["predicate"] = "  "
    (vg_root / "relationships.json").write_text(json.dumps(rel))
    with pytest.raises(DataFormatError, match=r"\[0\]\.relationships\[0\]\.predicate"):
        build_vg_examples(vg_root, vg_features)
    log = ProblemLog()
    ex = build_vg_examples(vg_root, vg_features, strict=False, problems=log)[0]
    assert [r.predicate for r in ex.relations if r.predicate] == ["on", "sitting on", "standing in"]
    assert len(log) == 1
