"""The demo builder writes only into a folder it owns: real data is never overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlprobe.synthetic.stamp import OWNER, STAMP, build_demo

TINY = {"scenes": 4, "seed": 0, "feature_dim": 8, "senteval_per_task": 10, "render_images": False}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_refuses_a_folder_holding_other_files(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "visual_genome").mkdir(parents=True)
    (real / "visual_genome" / "objects.json").write_text("[]  # the user's real file\n")
    (real / "senteval").mkdir()
    (real / "senteval" / "past_present.txt").write_text("tr\tPAST\tit rained .\n")
    before = _snapshot(real)
    with pytest.raises(ValueError, match=r"not vlprobe demo data.*add data=real") as err:
        build_demo(real, **TINY)
    assert "\n" not in str(err.value) and str(real) in str(err.value)
    assert _snapshot(real) == before  # nothing replaced, nothing added


def test_builds_into_new_or_empty_or_own_folder(tmp_path: Path) -> None:
    new = tmp_path / "new"
    assert build_demo(new, **TINY)
    assert (new / OWNER).exists() and (new / STAMP).exists()
    assert not build_demo(new, **TINY)  # current: reused
    assert build_demo(new, **{**TINY, "scenes": 5})  # its own folder: rebuilt for new settings
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build_demo(empty, **TINY)


def test_interrupted_build_is_still_owned(tmp_path: Path) -> None:
    """A build killed before its DONE stamp left files; the OWNER stamp lets the next one in."""
    root = tmp_path / "demo"
    build_demo(root, **TINY)
    (root / STAMP).unlink()
    assert build_demo(root, **TINY) and (root / STAMP).exists()


def test_a_smaller_rebuild_leaves_nothing_of_the_larger_one(tmp_path: Path) -> None:
    """6 scenes, then 4: the files of images 4 and 5 go, and the folder equals a fresh build."""
    root = tmp_path / "demo"
    build_demo(root, **{**TINY, "scenes": 6})
    assert (root / "flickr30k" / "Sentences" / "9000005.txt").exists()
    build_demo(root, **TINY)
    fresh = tmp_path / "fresh"
    build_demo(fresh, **TINY)
    assert _snapshot(root) == _snapshot(fresh)
