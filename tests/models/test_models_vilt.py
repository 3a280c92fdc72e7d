"""ViLT: patch tokens in raster order, region -> patch mapping, text limit, HF equivalence."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vlprobe.models.base import ModelInput
from vlprobe.models.vilt import patches_in_box

GRID_H, GRID_W = 3, 6  # the 128 x 64 demo image resized to 96 x 48, 16-pixel patches


def grid_cells(tokens: list[int], n_text: int) -> list[tuple[int, int]]:
    """(row, col) of each patch token (the image [CLS] sits at n_text)."""
    return [divmod(t - n_text - 1, GRID_W) for t in tokens]


def test_left_half_box_maps_only_to_left_half_patches(tiny_adapters, wide_png):
    adapter = tiny_adapters["vilt"]
    boxes = np.array([[0, 0, 64, 64], [64, 0, 128, 64], [100, 10, 101, 11]], np.float32)
    inp = ModelInput(
        words=["a", "dog"],
        region_boxes=boxes,
        region_features=np.zeros((3, 1), np.float32),
        image_size=(128, 64),
        image_path=wide_png,
    )
    (ex,) = adapter.encode([inp])
    n_text = 4
    assert ex.modality.tolist() == [0] * n_text + [1] * (1 + GRID_H * GRID_W)
    left, right, tiny = (grid_cells(t, n_text) for t in ex.region_tokens)
    assert sorted(left) == [(r, c) for r in range(GRID_H) for c in range(GRID_W // 2)]
    assert sorted(right) == [(r, c) for r in range(GRID_H) for c in range(GRID_W // 2, GRID_W)]
    assert tiny == [(0, 4)]  # no patch centre inside: the patch holding the box centre


def test_patches_in_box_fallback_is_clamped():
    assert patches_in_box(np.array([500, 500, 600, 600]), 2, 3, 16) == [5]
    assert patches_in_box(np.array([0, 0, 32, 16]), 2, 3, 16) == [0, 1]


def test_text_and_image_cls_match_hf_pixel_path(tiny_adapters, wide_png):
    """HF samples/shuffles patches itself; text and image [CLS] do not depend on the order."""
    adapter = tiny_adapters["vilt"]
    words = ["a", "skateboarding", "dog"]
    (ex,) = adapter.encode([ModelInput(words=words, image_path=wide_png)])
    enc = adapter.tokenizer(words, is_split_into_words=True, return_tensors="pt")
    pixels = adapter.image_processor(
        images=Image.open(wide_png).convert("RGB"), return_tensors="pt"
    )
    with torch.no_grad():
        ref = adapter.model(**enc, **pixels, output_hidden_states=True)
    n = enc["input_ids"].shape[1] + 1
    for layer in range(adapter.num_layers + 1):
        torch.testing.assert_close(ex.hidden[layer, :n], ref.hidden_states[layer][0, :n])
    assert ref.hidden_states[0].shape[1] == ex.num_tokens


def test_text_is_truncated_to_vilt_limit(tiny_adapters):
    adapter = tiny_adapters["vilt"]
    assert adapter.max_text_length == 40
    (ex,) = adapter.encode([ModelInput(words=["word"] * 60)])
    assert ex.num_tokens == 40 and ex.word_index[-1] == -1 and ex.word_index[-2] == 37
