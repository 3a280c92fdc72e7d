"""Look at one head's attention: from each phrase of a caption to the regions of its image.

Researchers used to bertviz or VL-InterpreT want to *see* what a head the probes single out
does. The cache keeps every phrase -> region attention of every head (``pairs/coref/attention``,
docs/cache_format.md) with the regions' gold boxes and which regions are in the phrase's chain
(``corefer``); here each phrase gets a panel: the image, every region box shaded by the weight
the head gives it from the phrase, the gold regions outlined. ``vlprobe show`` draws one
example; runs draw a few validation examples for the heads they chose on validation.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlprobe.cache.reader import CacheReader

#: panels per figure at most (a caption's first phrases)
MAX_PHRASES = 4


@dataclass
class PhraseAttention:
    """One phrase's attention to the regions of its image, for one head."""

    text: str
    boxes: np.ndarray  # (R, 4) x1, y1, x2, y2 in image pixels
    weights: np.ndarray  # (R,) summed attention from the phrase's tokens to each region's
    gold: np.ndarray  # (R,) bool: the region is in the phrase's coreference chain


def example_index(reader: CacheReader, example: str) -> int:
    """An example by its id (``examples/id``) or its row number."""
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in reader.example("id")]
    if example in ids:
        return ids.index(example)
    if example.isdigit() and int(example) < len(ids):
        return int(example)
    raise ValueError(
        f"--example {example}: no such example id or row in {reader.path} "
        f"({len(ids)} examples, e.g. {', '.join(ids[:3])})"
    )


def phrase_attention(reader: CacheReader, e: int, layer: int, head: int) -> list[PhraseAttention]:
    """Per phrase of example ``e``: boxes, head (``layer``, ``head``; 1-based as in probe names
    ``L01H02``) weights and gold marks."""
    reader.require(("phrase", "region", "coref"), "vlprobe show")
    num_layers, num_heads = reader.num_layers, reader.num_heads
    if not (1 <= layer <= num_layers and 1 <= head <= num_heads):
        raise ValueError(
            f"--layer {layer} --head {head}: {reader.path} has attention layers 1-{num_layers} "
            f"and heads 1-{num_heads} (as in probe names L01H01)"
        )
    words = _text(reader.example("text")[e]).split(" ")
    phrases = np.flatnonzero(reader.unit("phrase", "example") == e)
    spans = reader.unit("phrase", "word_span")
    offsets = reader.unit("phrase", "pair_offset")
    regions = reader.pair("coref", "region")
    corefer = reader.pair("coref", "corefer")
    boxes = reader.unit("region", "box")
    attention = reader.file["pairs/coref/attention"]
    out = []
    for p in phrases[:MAX_PHRASES]:
        lo, hi = int(offsets[p]), int(offsets[p + 1])
        if hi == lo:
            continue
        start, end = (int(v) for v in spans[p])
        out.append(
            PhraseAttention(
                text=" ".join(words[start:end]),
                boxes=boxes[regions[lo:hi]].astype(float),
                weights=attention[lo:hi, layer - 1, head - 1, 0].astype(float),
                gold=corefer[lo:hi] == 1,
            )
        )
    return out


def draw_attention(
    phrases: Sequence[PhraseAttention],
    image: Path | None,
    title: str,
    out: Path,
) -> Path:
    """One panel per phrase over the image (blank where ``image`` is missing): boxes filled by
    attention weight (darker red = more, on one scale for the figure), gold regions in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if not phrases:
        raise ValueError(f"{title}: the example has no phrase with a region to attend to")
    pixels = _load_image(image)
    top = max(float(np.nanmax(p.weights)) for p in phrases) or 1.0
    cmap = plt.get_cmap("Reds")
    # constrained: a one-phrase figure keeps its long caption (tight_layout gave up on it)
    size = (max(3.4 * len(phrases), 5.0), 3.8)
    fig, axes = plt.subplots(1, len(phrases), figsize=size, squeeze=False, layout="constrained")
    for ax, phrase in zip(axes[0], phrases, strict=True):
        if pixels is not None:
            ax.imshow(pixels)
        else:
            right = float(max(phrase.boxes[:, 2].max(), 1.0))
            bottom = float(max(phrase.boxes[:, 3].max(), 1.0))
            ax.set_xlim(0, right)
            ax.set_ylim(bottom, 0)
            ax.set_facecolor("0.92")
        for box, weight, gold in zip(phrase.boxes, phrase.weights, phrase.gold, strict=True):
            x1, y1, x2, y2 = box
            share = float(np.clip(weight / top, 0.0, 1.0)) if np.isfinite(weight) else 0.0
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, color=cmap(share), alpha=0.55))
            edge = "lime" if gold else "black"
            ax.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=edge, lw=3 if gold else 0.8)
            )
            # 2 significant digits: weights are often all below 0.05 (".2f" printed 0.00); the
            # offset in points, not data units (2 data units left boxes in 0-1 coordinates)
            label = f"{weight:.2g}"
            ax.annotate(label, (x1, y1), xytext=(2, -2), textcoords="offset points", va="top",
                        fontsize=7, color="black", annotation_clip=True,
                        bbox={"fc": "white", "alpha": 0.7, "lw": 0, "pad": 0.5})  # fmt: skip
        ax.set_title(f'"{phrase.text}"', fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    width = max(40, int(14 * size[0]))  # characters per caption line at this figure width
    caption = textwrap.fill(title, width)
    fig.suptitle(f"{caption}\nred: attention from the phrase (max {top:.2g}); green: gold region")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def image_path(reader: CacheReader, e: int, images: Path | None) -> Path | None:
    """``<images>/<image id>.png`` (or .jpg) of example ``e``; None when not there."""
    if images is None:
        return None
    group = _text(reader.example("group")[e])
    for suffix in (".png", ".jpg", ".jpeg"):
        if (images / f"{group}{suffix}").is_file():
            return images / f"{group}{suffix}"
    return None


def show(
    cache: Path, example: str, layer: int, head: int, images: Path | None, out: Path | None
) -> Path:
    """``vlprobe show``: draw one example's phrases for one head; returns the PNG."""
    reader = CacheReader(cache)
    try:
        e = example_index(reader, example)
        phrases = phrase_attention(reader, e, layer, head)
        name = _text(reader.example("id")[e])
        target = out or Path(f"attention_{name}_L{layer:02d}H{head:02d}.png")
        title = f"{_text(reader.example('text')[e])}  [L{layer:02d}H{head:02d}]"
        return draw_attention(phrases, image_path(reader, e, images), title, target)
    finally:
        reader.close()


def validation_figures(
    reader: CacheReader,
    heads: Sequence[tuple[int, int]],
    images: Path | None,
    out_dir: Path,
    examples: int = 3,
) -> list[Path]:
    """For a run: the first ``examples`` validation examples with phrases, for each of
    ``heads`` (1-based layer, head; chosen on validation by the caller)."""
    owners = set(reader.unit("phrase", "example").tolist())
    val = [e for e in np.flatnonzero(reader.example_split == 1) if int(e) in owners]
    drawn = []
    for layer, head in heads:
        for e in val[:examples]:
            phrases = phrase_attention(reader, int(e), layer, head)
            if not phrases:
                continue
            name = _text(reader.example("id")[e])
            title = f"{_text(reader.example('text')[e])}  [L{layer:02d}H{head:02d}]"
            target = out_dir / "attention" / f"{name}_L{layer:02d}H{head:02d}.png"
            drawn.append(draw_attention(phrases, image_path(reader, int(e), images), title, target))
    return drawn


def _load_image(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
