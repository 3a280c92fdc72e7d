import json
from pathlib import Path

import pytest

from vlprobe.data.errors import DataFormatError, ProblemLog
from vlprobe.data.types import Box
from vlprobe.data.visual_genome import load_visual_genome, normalize_predicate


@pytest.mark.parametrize(
    ("raw", "norm"),
    [("ON", "on"), ("On ", "on"), ("sitting  on", "sitting on"), (" Next\tTo\n", "next to")],
)
def test_normalize_predicate(raw: str, norm: str) -> None:
    assert normalize_predicate(raw) == norm


def test_load_visual_genome(vg_root: Path) -> None:
    images = load_visual_genome(vg_root)
    assert sorted(images) == ["1", "2"]  # "image_id" and "id" keys both work
    one = images["1"]
    assert (one.width, one.height) == (100, 80)
    assert sorted(one.objects) == [10, 11, 12, 13]  # 13 only appears in relationships.json
    assert one.objects[10].box == Box(0, 0, 20, 40)  # x, y, w, h -> x1, y1, x2, y2
    assert one.objects[10].names == ("man",)
    assert one.objects[11].names == ("horse",)  # "name": "..." instead of "names": [...]
    assert one.objects[12].names == ("hat", "cap")
    assert one.objects[13].box == Box(60, 40, 90, 70)
    assert [(r.relationship_id, r.predicate, r.subject_id, r.object_id) for r in one.relations] == [
        (100, "on", 10, 11),
        (101, "on", 10, 11),
        (102, "sitting on", 12, 10),
        (103, "standing in", 11, 13),
        (104, "is", 10, 10),
    ]
    assert images["2"].objects[20].names == ("dog",)


def test_objects_json_wins_over_relationship_copy(vg_root: Path) -> None:
    rel = json.loads((vg_root / "relationships.json").read_text())
    rel[0]["relationships"][0]["subject"]["x"] = 5  # a different copy of object 10
    (vg_root / "relationships.json").write_text(json.dumps(rel))
    assert load_visual_genome(vg_root)["1"].objects[10].box == Box(0, 0, 20, 40)


def test_errors_cite_file_and_json_path(vg_root: Path) -> None:
    rel = json.loads((vg_root / "relationships.json").read_text())
    del rel[0]["relationships"][2]["subject"]["x"]
    rel[0]["relationships"][3]["object"]["names"] = []
    (vg_root / "relationships.json").write_text(json.dumps(rel))
    with pytest.raises(DataFormatError) as info:
        load_visual_genome(vg_root)
    assert str(info.value).startswith(
        f"{vg_root / 'relationships.json'}, [0].relationships[2].subject.x: expected a number"
    )
    log = ProblemLog()
    images = load_visual_genome(vg_root, strict=False, problems=log)
    assert [r.relationship_id for r in images["1"].relations] == [100, 101, 104]
    assert [p.location for p in log.problems] == [
        "[0].relationships[2].subject.x",
        "[0].relationships[3].object",
    ]
    assert "has no name" in log.problems[1].message
    assert "skipped 2 bad records" in log.report()


def test_missing_image_id_and_unknown_image(vg_root: Path) -> None:
    objs = json.loads((vg_root / "objects.json").read_text())
    objs.append({"image_id": 99, "objects": []})
    objs.append({"objects": []})
    (vg_root / "objects.json").write_text(json.dumps(objs))
    log = ProblemLog()
    load_visual_genome(vg_root, strict=False, problems=log)
    assert [str(p) for p in log.problems] == [
        f"{vg_root / 'objects.json'}, [2]: image 99 is not in image_data.json",
        f"{vg_root / 'objects.json'}, [3]: no 'image_id' (or 'id')",
    ]


def test_empty_box_and_truncated_json(vg_root: Path) -> None:
    objs = json.loads((vg_root / "objects.json").read_text())
    objs[0]["objects"][1]["w"] = 0
    (vg_root / "objects.json").write_text(json.dumps(objs))
    with pytest.raises(DataFormatError, match=r"\[0\]\.objects\[1\]: object 11 has an empty box"):
        load_visual_genome(vg_root)
    (vg_root / "objects.json").write_text('[{"image_id": 1,\n "objects": [')
    with pytest.raises(DataFormatError, match=r"objects\.json, line 2, column \d+: invalid JSON"):
        load_visual_genome(vg_root)


def test_objects_from_relationships_when_objects_json_is_absent(vg_root: Path) -> None:
    """Visual Genome's relationships.json carries each related object whole."""
    (vg_root / "objects.json").unlink()
    one = load_visual_genome(vg_root)["1"]
    assert sorted(one.objects) == [10, 11, 12, 13]  # all related: all found in the relations
    assert one.objects[10].box == Box(0, 0, 20, 40) and one.objects[12].names == ("hat", "cap")
    assert len(one.relations) == 5


@pytest.mark.parametrize("missing", ["image_data.json", "relationships.json"])
def test_missing_required_file_is_named(vg_root: Path, missing: str) -> None:
    (vg_root / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"{missing} not found.*objects.json is optional"):
        load_visual_genome(vg_root)
