"""`vlprobe verify` covers every dataset and attribute it claims to: a flipped byte in a
caption (a variable-length string, which HDF5 cannot checksum) or an edited label list fails,
naming the dataset or attribute; a cache written before those checksums were stored passes
with what could not be checked listed, instead of a claim that everything was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from vlprobe.cache.reader import CacheReader
from vlprobe.cache.records import ExampleRecord, LabelVocab
from vlprobe.cache.writer import CacheWriter
from vlprobe.cli import main as vlprobe
from vlprobe.extraction.pipeline import ensure_cache

CAPTION = "a brown dog chases the frisbee near a wooden bench"


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cache through the writer: 6 captions, region categories named in label_names."""
    path = tmp_path_factory.mktemp("sealed") / "c.h5"
    labels = LabelVocab(category=["bench", "dog", "frisbee"], predicate=[], sentence=[])
    rng = np.random.default_rng(0)
    with CacheWriter(path, {"num_layers": 1, "num_heads": 2}, labels) as writer:
        for i in range(6):
            writer.add(
                ExampleRecord.with_units(
                    example_id=f"img{i}",
                    group_id=f"img{i}",
                    split="train",
                    hidden=rng.normal(size=(2, 4, 8)),
                    modality=np.array([0, 0, 1, 1], np.int8),
                    word_index=np.array([-1, 0, -1, -1], np.int32),
                    cls_mass=np.full((1, 2, 2), 0.5),
                    region_emb=rng.normal(size=(2, 2, 8)),
                    region_category=np.array([i % 3, (i + 1) % 3], np.int32),
                    region_box=np.zeros((2, 4), np.float32),
                    text=CAPTION if i == 4 else f"caption number {i}",
                )
            )
    return path


def _copy(path: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(path, tmp_path / path.name))


def _verify(path: Path, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = vlprobe(["verify", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_whole_cache_is_ok_and_nothing_is_left_unchecked(sealed: Path, capsys) -> None:
    code, out, _ = _verify(sealed, capsys)
    assert code == 0 and "every dataset and attribute read back against its checksum)" in out
    assert "not checked" not in out


def test_a_flipped_byte_in_a_caption_fails(sealed: Path, tmp_path: Path, capsys) -> None:
    path = _copy(sealed, tmp_path)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"frisbee near")
    assert at > 0 and raw.find(b"frisbee near", at + 1) < 0  # the caption's only copy
    raw[at] ^= 0x01  # "frisbee" -> "grisbee": still valid UTF-8, still a string
    path.write_bytes(bytes(raw))
    assert CacheReader(path).example("text")[4].decode() != CAPTION  # it reads back changed
    code, _, err = _verify(path, capsys)
    assert code == 1 and "BROKEN (1 problem(s))" in err
    assert "examples/text does not match its checksum" in err


def test_swapped_label_names_fail(sealed: Path, tmp_path: Path, capsys) -> None:
    path = _copy(sealed, tmp_path)
    with h5py.File(path, "r+") as f:
        names = json.loads(f.attrs["label_names"])
        names["category"][0], names["category"][1] = names["category"][1], names["category"][0]
        f.attrs["label_names"] = json.dumps(names)
    code, _, err = _verify(path, capsys)
    assert code == 1 and "attribute label_names of the file does not match its checksum" in err


def test_a_cache_without_checksums_says_what_was_not_checked(
    sealed: Path, tmp_path: Path, capsys
) -> None:
    path = _copy(sealed, tmp_path)
    with h5py.File(path, "r+") as f:  # as written before the checksums were stored
        if "checksums" in f.attrs:
            del f.attrs["checksums"]
    code, out, _ = _verify(path, capsys)
    assert code == 0 and "but those below" in out
    assert out.splitlines()[1].endswith(
        "examples/group, examples/id, examples/text, the attributes of the file"
    )


def test_streams_and_merged_shards_are_sealed(builder_cfg, tmp_path: Path, capsys) -> None:
    """LXMERT in 3 shards: each stream's group and the file's root carry the merged digests;
    a changed layer name of one stream is named with its group."""
    cfg = builder_cfg("flickr30k", model="lxmert", shards=3)
    path = _copy(ensure_cache(cfg, "flickr30k", ("phrase",)), tmp_path)
    code, out, _ = _verify(path, capsys)
    assert code == 0 and "not checked" not in out
    with h5py.File(path, "r+") as f:
        group = f["streams/vision"]
        group.attrs["layer_names"] = json.dumps(json.loads(group.attrs["layer_names"])[::-1])
        text = f["streams/language/examples/text"]
        text[0] = text[0].decode() + "!"
    code, _, err = _verify(path, capsys)
    assert code == 1 and "BROKEN (2 problem(s))" in err
    assert "attribute layer_names of streams/vision does not match its checksum" in err
    assert "streams/language/examples/text does not match its checksum" in err
