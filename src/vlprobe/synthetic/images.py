"""Render scenes as PNG images for patch-based models (ViLT), which read pixels, not regions.

Each object is a shape in its colour at its box: the shape tells the type, the number of inner
stripes the category within the type, so what the captions say is visible in the pixels.
Larger objects are drawn first so that clothing and body parts stay visible on people.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from vlprobe.synthetic.scenes import CATEGORIES, COLOURS, Scene, SceneObject

_BACKGROUND = {
    "street": ((150, 150, 155), (95, 95, 100)),
    "park": ((150, 200, 240), (90, 170, 80)),
    "beach": ((140, 190, 235), (225, 205, 150)),
}


def _shape(draw: ImageDraw.ImageDraw, obj: SceneObject) -> None:
    x1, y1, x2, y2 = obj.box
    x2, y2 = x2 - 1, y2 - 1
    fill = COLOURS[obj.colour]
    outline = (0, 0, 0) if obj.colour != "black" else (255, 255, 255)
    t = obj.type
    thin = max(1, min(2, (x2 - x1) // 12, (y2 - y1) // 12))  # lines must not hide small shapes
    if t == "people":
        draw.ellipse((x1, y1, x2, y2), fill=fill, outline=outline, width=thin)
    elif t == "animals":
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        draw.polygon([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], fill=fill, outline=outline)
    elif t == "instruments":
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=fill, outline=outline)
    elif t == "vehicles":
        r = max(2, (y2 - y1) // 5)
        draw.rectangle((x1, y1, x2, y2 - r), fill=fill, outline=outline, width=thin)
        for cx in (x1 + (x2 - x1) // 4, x2 - (x2 - x1) // 4):
            draw.ellipse((cx - r, y2 - 2 * r, cx + r, y2), fill=(20, 20, 20))
    elif t == "bodyparts":
        radius = max(1, min(x2 - x1, y2 - y1) // 3)
        draw.rounded_rectangle((x1, y1, x2, y2), radius, fill=fill, outline=outline, width=thin)
    else:  # clothing, other
        width = 2 * thin if t == "clothing" else thin
        draw.rectangle((x1, y1, x2, y2), fill=fill, outline=outline, width=width)
    stripes = CATEGORIES[t].index(obj.category)
    for k in range(1, stripes + 1):
        y = y1 + k * (y2 - y1) // (stripes + 1)
        draw.line((x1 + (x2 - x1) // 4, y, x2 - (x2 - x1) // 4, y), fill=outline, width=thin)


def render_scene(scene: Scene) -> Image.Image:
    """The scene as an RGB image of its own size: sky/ground by setting, then the objects."""
    sky, ground = _BACKGROUND[scene.setting]
    image = Image.new("RGB", (scene.width, scene.height), sky)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, scene.height * 2 // 5, scene.width, scene.height), fill=ground)
    order = sorted(scene.objects, key=lambda o: -(o.box[2] - o.box[0]) * (o.box[3] - o.box[1]))
    for obj in order:
        _shape(draw, obj)
    return image


def write_images(folder: str | os.PathLike[str], scenes: Sequence[Scene]) -> Path:
    """Write ``folder/<image_id>.png`` for every scene (fast compression, deterministic bytes)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for scene in scenes:
        render_scene(scene).save(folder / f"{scene.image_id}.png", compress_level=1)
    return folder
