"""Rendered images: one PNG per image id, the annotated size, objects drawn in their colour."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vlprobe.synthetic import DemoDataPaths
from vlprobe.synthetic.images import render_scene
from vlprobe.synthetic.scenes import COLOURS, Scene


def test_one_png_per_scene(demo: DemoDataPaths, demo_scenes: list[Scene]) -> None:
    assert sorted(p.stem for p in demo.images.glob("*.png")) == sorted(
        s.image_id for s in demo_scenes
    )
    for scene in demo_scenes[:10]:
        with Image.open(demo.images / f"{scene.image_id}.png") as im:
            assert im.mode == "RGB" and im.size == (scene.width, scene.height)
            np.testing.assert_array_equal(np.asarray(im), np.asarray(render_scene(scene)))


def test_smallest_object_visible_in_its_colour(demo_scenes: list[Scene]) -> None:
    """The smallest object is drawn last: the middle of its box is mostly its colour."""
    for scene in demo_scenes:
        obj = min(scene.objects, key=lambda o: (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]))
        x1, y1, x2, y2 = obj.box
        w, h = x2 - x1, y2 - y1
        if min(w, h) < 12:
            continue
        pixels = np.asarray(render_scene(scene))[
            y1 + h // 4 : y2 - h // 4 + 1, x1 + w // 4 : x2 - w // 4 + 1
        ]
        share = (pixels == COLOURS[obj.colour]).all(axis=-1).mean()
        assert share > 0.3, (scene.image_id, obj)
