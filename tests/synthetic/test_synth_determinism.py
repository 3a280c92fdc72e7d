"""The generator is a pure function of its arguments: same seed, same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from vlprobe.synthetic import DemoDataPaths, make_demo_data

SMALL = dict(scenes=8, feature_dim=16, image_size=96, senteval_per_task=40)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout(tmp_path: Path) -> None:
    paths = make_demo_data(tmp_path, seed=1, **SMALL)
    assert paths == DemoDataPaths(
        flickr30k=tmp_path / "flickr30k",
        visual_genome=tmp_path / "visual_genome",
        features=tmp_path / "features" / "butd.tsv",
        images=tmp_path / "images",
        senteval=tmp_path / "senteval",
    )
    assert len(list((tmp_path / "flickr30k" / "Sentences").glob("*.txt"))) == 8
    assert len(list((tmp_path / "flickr30k" / "Annotations").glob("*.xml"))) == 8
    assert {p.name for p in paths.visual_genome.iterdir()} == {
        "objects.json",
        "relationships.json",
        "image_data.json",
    }
    assert len(list(paths.images.glob("*.png"))) == 8
    assert len(list(paths.senteval.glob("*.txt"))) == 10


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    make_demo_data(tmp_path / "a", seed=3, **SMALL)
    make_demo_data(tmp_path / "b", seed=3, **SMALL)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(a) > 40
    assert a == b


def test_different_seed_differs(tmp_path: Path) -> None:
    make_demo_data(tmp_path / "a", seed=3, **SMALL)
    make_demo_data(tmp_path / "b", seed=4, **SMALL)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    for part in ("flickr30k/train.txt", "visual_genome/objects.json", "features/butd.tsv"):
        assert a[part] != b[part], part
    for task in ("tree_depth", "word_content", "odd_man_out"):
        assert a[f"senteval/{task}.txt"] != b[f"senteval/{task}.txt"]
    assert any(a[k] != b[k] for k in a if k.startswith("images/"))


def test_no_images(tmp_path: Path) -> None:
    paths = make_demo_data(tmp_path, seed=1, render_images=False, **SMALL)
    assert paths.images.is_dir() and not any(paths.images.iterdir())
