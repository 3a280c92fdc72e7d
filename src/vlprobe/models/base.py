"""The one result every model adapter returns, whatever the architecture.

Token order is always ``[text tokens (with [CLS]/[SEP]); image tokens]``. Downstream code
(extraction, the cache, every analysis) only ever sees this, so a new model is one adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch


@dataclass
class ModelInput:
    """One image-text pair (or a sentence alone: ``regions is None`` and ``image_path is None``)."""

    words: list[str]  # whitespace tokens of the caption/sentence
    region_features: np.ndarray | None = None  # (N, D) float32, detector features
    region_boxes: np.ndarray | None = None  # (N, 4) float32 pixels x1 y1 x2 y2
    image_size: tuple[int, int] | None = None  # (width, height) in pixels
    image_path: str | None = None  # a PNG/JPEG, for pixel models (ViLT)


@dataclass
class EncodedExample:
    """What a frozen model computed for one input, padding removed.

    ``hidden[l]`` is the output of layer ``l`` (``l = 0``: the embeddings), ``attentions[l]``
    the attention probabilities of layer ``l + 1`` (rows sum to 1).
    """

    hidden: torch.Tensor  # (num_layers + 1, T, d) float32
    attentions: torch.Tensor  # (num_layers, H, T, T) float32
    modality: torch.Tensor  # (T,) int8: 0 text, 1 image
    word_index: torch.Tensor  # (T,) int64: input word of each text token, -1 for specials/image
    region_tokens: list[list[int]] = field(default_factory=list)  # input region -> image tokens

    @property
    def num_tokens(self) -> int:
        return int(self.modality.shape[0])


class Adapter(Protocol):
    """A frozen Hugging Face model behind the uniform interface."""

    name: str
    num_layers: int  # attention layers; hidden states have num_layers + 1 entries
    num_heads: int
    hidden_size: int
    layer_names: list[str]  # num_layers + 1 names, e.g. ["emb", "L01", ...] or ["emb", "X01", ...]
    streams: tuple[str, ...]  # empty, or the sequences of a multi-stream model (LXMERT)

    def encode(self, batch: list[ModelInput]) -> list[EncodedExample]: ...

    def provenance(self) -> dict[str, str]: ...
