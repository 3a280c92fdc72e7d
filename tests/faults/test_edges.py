"""Edges that gave a silently wrong result or lost data (issue 24): each test fails on the
code before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlprobe.synthetic.stamp import OWNER, STAMP, build_demo

TINY = {"scenes": 4, "seed": 0, "feature_dim": 8, "senteval_per_task": 10, "render_images": False}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- 1. the demo owns its own
def _users_folder(root: Path) -> Path:
    """A user's data folder that happens to hold a file named DONE."""
    (root / "sub").mkdir(parents=True)
    (root / "flickr30k_entities").mkdir()
    (root / "annotations.json").write_text('{"mine": true}\n')
    (root / "sub" / "notes.txt").write_text("keep me\n")
    (root / "flickr30k_entities" / "train.txt").write_text("1000092795\n")
    (root / STAMP).write_text("complete\n")
    return root


def test_a_done_file_does_not_make_a_folder_the_demos(tmp_path: Path) -> None:
    root = _users_folder(tmp_path / "data")
    before = _snapshot(root)
    with pytest.raises(ValueError, match=r"did not write .*add data=real") as err:
        build_demo(root, **TINY)
    assert "\n" not in str(err.value)
    assert _snapshot(root) == before and not (root / OWNER).exists()


def test_make_demo_data_refuses_a_folder_it_did_not_write(tmp_path: Path, capsys) -> None:
    from vlprobe.cli import main as vlprobe

    root = _users_folder(tmp_path / "data")
    before = _snapshot(root)
    assert vlprobe(["make-demo-data", "--out", str(root), "--scenes", "4", "--no-images"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("vlprobe make-demo-data: error: data.root=") and "data=real" in line
    assert _snapshot(root) == before


def test_files_added_to_a_demo_folder_are_not_deleted(tmp_path: Path) -> None:
    """The manifest lists what the demo wrote: a user's file beside it (or inside one of its
    folders) stops the rebuild instead of going with it."""
    root = tmp_path / "demo"
    build_demo(root, **TINY)
    (root / "senteval" / "my_task.txt").write_text("tr\tA\tmine .\n")
    with pytest.raises(ValueError, match="my_task.txt"):
        build_demo(root, **{**TINY, "scenes": 5})
    assert (root / "senteval" / "my_task.txt").exists()
    (root / "senteval" / "my_task.txt").unlink()
    (root / "annotations.json").write_text("{}\n")
    with pytest.raises(ValueError, match="annotations.json"):
        build_demo(root, **{**TINY, "scenes": 5}, force=True)
    assert (root / "annotations.json").exists()
