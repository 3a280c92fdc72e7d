"""``vlprobe show``: a head's attention from each phrase to the regions, read from the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlprobe.cache.reader import CacheReader
from vlprobe.cli import main
from vlprobe.show import draw_attention, example_index, phrase_attention


def test_phrase_attention_reads_the_head_of_each_phrase(tiny_cache: Path) -> None:
    reader = CacheReader(tiny_cache)
    try:
        e = example_index(reader, "e1")
        assert e == 1 and example_index(reader, "1") == 1
        # layer 1 head 1 (L01H01): phrase 0 attends region 0 (gold), phrase 1 region 1 (gold)
        first, second, third = phrase_attention(reader, e, layer=1, head=1)
        np.testing.assert_allclose(first.weights, [0.5, 0.125, 0.125])
        assert first.gold.tolist() == [True, False, False]
        np.testing.assert_allclose(second.weights, [0.125, 0.5, 0.125])
        assert second.gold.tolist() == [False, True, True]
        assert not third.gold.any()  # the phrase without a gold region
        # L01H02: phrase 0 attends region 1, phrase 1 region 0
        first, second, _ = phrase_attention(reader, e, layer=1, head=2)
        assert int(np.argmax(first.weights)) == 1 and int(np.argmax(second.weights)) == 0
        assert first.boxes.shape == (3, 4)
        with pytest.raises(ValueError, match=r"^--layer 3 --head 1: .* layers 1-2 and heads 1-2"):
            phrase_attention(reader, e, layer=3, head=1)
        with pytest.raises(ValueError, match=r"^--example nope: no such example"):
            example_index(reader, "nope")
    finally:
        reader.close()


def test_draw_over_an_image(tiny_cache: Path, tmp_path: Path) -> None:
    reader = CacheReader(tiny_cache)
    try:
        phrases = phrase_attention(reader, 1, 1, 1)
    finally:
        reader.close()
    for p in phrases:
        p.boxes = np.array([[0, 0, 20, 20], [20, 0, 40, 20], [0, 20, 40, 40]], float)
    image = tmp_path / "img.png"
    Image.new("RGB", (40, 40), "white").save(image)
    out = draw_attention(phrases, image, "e1 L01H01", tmp_path / "a.png")
    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert pixels.shape[1] > pixels.shape[0]  # one panel per phrase, side by side
    green = (pixels[..., 1] > 200) & (pixels[..., 0] < 80) & (pixels[..., 2] < 80)
    assert green.any()  # gold regions outlined


def test_the_caption_fits_without_an_image(tiny_cache: Path, tmp_path: Path) -> None:
    """No image (boxes in their own coordinates) and a long caption, over one and over all
    phrases: the caption wraps and the layout holds (tight_layout warned and gave up)."""
    import warnings

    reader = CacheReader(tiny_cache)
    try:
        phrases = phrase_attention(reader, 1, 1, 1)
    finally:
        reader.close()
    long = "A man in a red shirt hands a small dog to a woman by the door of a bus  [L01H01]"
    for shown in (phrases[:1], phrases):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "Tight layout not applied" fails the test
            out = draw_attention(shown, None, long, tmp_path / f"{len(shown)}.png")
        assert out.is_file()


def test_cli_show(tiny_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fig.png"
    args = ["show", str(tiny_cache), "--example", "e1", "--layer", "2", "--head", "1"]
    assert main([*args, "--out", str(out)]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert main([*args[:4], "--layer", "9", "--head", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlprobe show: error: --layer 9 --head 1:") and "\n" not in err


def test_a_run_draws_the_heads_chosen_on_validation(tiny_cache: Path, tmp_path: Path) -> None:
    from vlprobe.reporting.wandb_publish import attention_figures, chosen_heads

    rows = [
        {"kind": "head", "layer": 1, "head": 2, "val_acc": 0.9, "test_acc": 0.1},
        {"kind": "head", "layer": 2, "head": 1, "val_acc": 0.2, "test_acc": 0.99},
        {"kind": "head", "layer": 1, "head": 1, "val_acc": 0.8, "test_acc": 0.5},
        {"kind": "embedding", "layer": 1, "head": None, "val_acc": 1.0, "test_acc": 1.0},
    ]
    assert chosen_heads(rows) == [(1, 2), (1, 1)]  # by validation, never by test
    # two subtasks: each one's best head, not the two best accuracies of the easier subtask
    binary = [r | {"subtask": "identification", "val_acc": r["val_acc"] + 0.1} for r in rows]
    many = {"subtask": "type", "kind": "head", "layer": 2, "head": 2, "val_acc": 0.4}
    assert chosen_heads([*binary, many]) == [(1, 2), (2, 2)]
    assert chosen_heads([*binary, many], top=3) == [(1, 2), (2, 2), (1, 1)]
    reader = CacheReader(tiny_cache)
    try:
        reader.__dict__["example_split"] = np.array([0, 1, 1], np.int8)  # e1, e2 validation
        drawn = attention_figures(rows, {"model": {"flickr30k": reader}}, None, tmp_path)
    finally:
        reader.close()
    assert [p.name for p in drawn] == [
        "e1_L01H02.png",
        "e2_L01H02.png",
        "e1_L01H01.png",
        "e2_L01H01.png",
    ]
    assert all(p.parent == tmp_path / "attention" and p.is_file() for p in drawn)
