from pathlib import Path

import pytest

from vlprobe.data.errors import DataFormatError, ProblemLog
from vlprobe.data.flickr30k import (
    Flickr30kEntities,
    parse_caption,
    read_annotation,
    read_sentences,
    read_split,
)
from vlprobe.data.types import Box


def test_parse_caption_real_example() -> None:
    line = (
        "[/EN#1/people Two young guys] with [/EN#2/bodyparts shaggy hair] look at "
        "[/EN#3/bodyparts their hands] while hanging out in [/EN#8/scene the yard] ."
    )
    cap = parse_caption(line, "1000092795", 0)
    assert " ".join(cap.words) == (
        "Two young guys with shaggy hair look at their hands while hanging out in the yard ."
    )
    assert [(p.chain_id, p.types, p.words, p.first_word) for p in cap.phrases] == [
        ("1", ("people",), ("Two", "young", "guys"), 0),
        ("2", ("bodyparts",), ("shaggy", "hair"), 4),
        ("3", ("bodyparts",), ("their", "hands"), 8),
        ("8", ("scene",), ("the", "yard"), 14),
    ]
    for p in cap.phrases:  # first_word indexes the caption's words
        start, end = p.word_span
        assert cap.words[start:end] == p.words


def test_parse_caption_several_types_notvisual_end_and_punctuation() -> None:
    cap = parse_caption(
        "[/EN#255545/bodyparts/people a man 's arm] , and [/EN#0/notvisual each other]", "7", 3
    )
    assert (cap.image_id, cap.index) == ("7", 3)
    assert cap.words == ("a", "man", "'s", "arm", ",", "and", "each", "other")
    assert cap.phrases[0].types == ("bodyparts", "people")
    assert (cap.phrases[1].chain_id, cap.phrases[1].types, cap.phrases[1].word_span) == (
        "0",
        ("notvisual",),
        (6, 8),
    )


def test_parse_caption_punctuation_glued_to_bracket() -> None:
    cap = parse_caption("Look at [/EN#4/animals the dog].", "1", 0)
    assert cap.words == ("Look", "at", "the", "dog", ".")
    assert cap.phrases[0].word_span == (2, 4)


def test_parse_caption_without_phrases() -> None:
    cap = parse_caption("  just words here \n", "1", 0)
    assert cap.words == ("just", "words", "here") and cap.phrases == ()


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("[/EN#1/people a man walks", "line 3, column 1: '[' is never closed"),
        ("a man] walks", "line 3, column 6: ']' without an opening '['"),
        ("[/EN#x/people a man]", "chain id 'x' is not a number"),
        ("[/EN#1 a man]", "empty or missing type"),
        ("[/EN#1/people ]", "has no words"),
        ("[/EN#1/people a [/EN#2/other b]]", "nested '['"),
        ("[people a man]", "does not start with '/EN#'"),
    ],
)
def test_parse_caption_errors_name_file_line_column(line: str, fragment: str) -> None:
    with pytest.raises(DataFormatError) as info:
        parse_caption(line, "42", 2)
    text = str(info.value)
    assert text.startswith("Sentences/42.txt, line 3")
    assert fragment in text
    assert "[/EN#<chain id>/<type>" in text  # says how it should look


def test_read_sentences_strict_and_lenient(tmp_path: Path) -> None:
    path = tmp_path / "Sentences" / "5.txt"
    path.parent.mkdir()
    path.write_text("[/EN#1/people A man] .\n\n[/EN#2/other broken\n[/EN#3/scene A park]\n")
    with pytest.raises(DataFormatError, match=r"5\.txt, line 3, column 1"):
        read_sentences(path)
    log = ProblemLog()
    caps = read_sentences(path, strict=False, problems=log)
    assert [c.index for c in caps] == [0, 3]  # indexes keep counting lines
    assert all(c.image_id == "5" for c in caps)
    assert len(log) == 1 and log.problems[0].location == "line 3, column 1"


def test_read_annotation_names_boxes_flags(tmp_path: Path, flickr_writer) -> None:
    flickr_writer(
        tmp_path,
        "9",
        ["x"],
        [
            (["1", "2"], (1, 1, 10, 20)),  # one box, two chains
            (["1"], (5, 5, 5, 6)),  # one-pixel-wide box, second box of chain 1
            (["3"], "nobox"),
            (["4"], "scene"),
        ],
        size=(333, 500),
    )
    ann = read_annotation(tmp_path / "Annotations" / "9.xml")
    assert (ann.image_id, ann.width, ann.height) == ("9", 333, 500)
    # 1-based inclusive pixels -> x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax
    assert ann.boxes["1"] == [Box(0, 0, 10, 20), Box(4, 4, 5, 6)]
    assert ann.boxes["2"] == [Box(0, 0, 10, 20)]
    assert ann.boxes["1"][1].area == 2
    assert ann.nobox == {"3", "4"} and ann.scene == {"4"}
    assert "3" not in ann.boxes


def test_read_annotation_errors(tmp_path: Path, flickr_writer) -> None:
    flickr_writer(tmp_path, "9", ["x"], [(["1"], (10, 1, 5, 20)), (["2"], (1, 1, 3, 3))])
    path = tmp_path / "Annotations" / "9.xml"
    with pytest.raises(DataFormatError) as info:
        read_annotation(path)
    assert str(info.value).startswith(f"{path}, annotation/object[1]/bndbox: empty box")
    log = ProblemLog()
    ann = read_annotation(path, strict=False, problems=log)
    assert list(ann.boxes) == ["2"] and len(log) == 1

    path.write_text(path.read_text().replace("<ymin>1</ymin>", "<ymin>one</ymin>", 1))
    with pytest.raises(DataFormatError, match=r"object\[1\]/bndbox/ymin: expected a number"):
        read_annotation(path)

    path.write_text("<annotation>\n<size><width>3</width>\n</annotation>\n")
    with pytest.raises(DataFormatError, match=r"9\.xml, line 3, column \d+: not well-formed XML"):
        read_annotation(path)

    path.write_text("<annotation><object><name>1</name></object></annotation>")
    with pytest.raises(DataFormatError, match="annotation/size: missing <size>"):
        read_annotation(path)


def test_read_annotation_object_without_box_or_flag(tmp_path: Path) -> None:
    path = tmp_path / "1.xml"
    path.write_text(
        "<annotation><size><width>5</width><height>5</height></size>"
        "<object><name>1</name></object></annotation>"
    )
    with pytest.raises(DataFormatError, match=r"object\[1\]: object has neither <bndbox>"):
        read_annotation(path)


def test_read_split(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("1\n\n2 \n1\n")
    with pytest.raises(DataFormatError, match=r"train\.txt, line 4: image id 1 repeats line 1"):
        read_split(path)
    assert read_split(path, strict=False, problems=ProblemLog()) == ["1", "2"]


def test_dataset_access(flickr_root: Path) -> None:
    ds = Flickr30kEntities(flickr_root)
    assert ds.split_ids("train") == ["100", "200"]
    assert ds.split_ids("val") == ["300"] and ds.split_of("400") == "test"
    assert ds.image_ids() == ["100", "200", "300", "400"]
    assert len(ds.captions("100")) == 3
    assert ds.annotation("100").width == 100
    with pytest.raises(ValueError):
        ds.split_ids("dev")


def test_image_in_two_splits_is_an_error(flickr_root: Path) -> None:
    (flickr_root / "test.txt").write_text("400\n100\n")
    with pytest.raises(DataFormatError, match=r"test\.txt, image 100: also listed in train\.txt"):
        Flickr30kEntities(flickr_root).split_ids("test")
    log = ProblemLog()
    assert Flickr30kEntities(flickr_root, strict=False, problems=log).split_ids("test") == ["400"]
    assert len(log) == 1
