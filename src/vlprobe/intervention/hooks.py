"""Apply an eraser inside a model's forward pass, at one hidden layer, to some of its tokens.

A forward pre-hook on the model reads the batch's masks (which sequence positions are region
tokens); a forward hook on the module that produces hidden layer ``L`` replaces those positions'
states with erased ones, so every layer above computes on them and the cached layer ``L`` holds
them. Layer ``L >= 1`` is the output sub-module of transformer layer ``L`` (``layer.output``:
VisualBERT calls the layer, UNITER its parts, and both call this); layer 0 is the module
that embeds the regions (the text, for word tokens).

Word tokens (``tokens="words"``: a phrase's, a sentence's) are not in the forward's arguments:
:func:`selecting_words` wraps the adapter's tokenizer, which knows each token's word, and
keeps, per example of the batch, which of its text tokens belong to the words to erase.

LXMERT: only its single-stream encoders take a hook (:func:`lxmert_site`): region tokens in the
vision (object-relationship) encoder, word tokens in the language encoder, each numbered as its
cached stream (``vis00``.., ``lang00``..). Its cross-modality layers take two streams and are
refused (``settings.erased_stream``), as is ViLT, whose image tokens are patches, not regions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn
from transformers import LxmertModel, VisualBertModel

from vlprobe.intervention.concepts import TOKENS
from vlprobe.intervention.erasers import Eraser
from vlprobe.models.base import ModelInput
from vlprobe.models.lxmert import DUMMY_BOX
from vlprobe.models.uniter import UniterModel

#: the forward's keyword arguments -> (B, S) bool mask of the positions to erase
MaskFn = Callable[[Mapping[str, Any]], torch.Tensor | None]
#: (model, hidden layer, tokens) -> (module whose output is that layer's states, its mask)
SiteFn = Callable[[nn.Module, int, str], tuple[nn.Module, MaskFn]]

#: per example of the batch being encoded, which of its text tokens to erase (selecting_words)
_SELECTED: ContextVar[list[torch.Tensor] | None] = ContextVar("erased_text_tokens", default=None)


@contextmanager
def selecting_words(adapter: Any, words: Callable[[ModelInput], Collection[int]]) -> Iterator[None]:
    """Within the block, each batch ``adapter`` tokenizes marks the tokens of ``words(input)``
    for :func:`erasing` with ``tokens="words"`` (the adapter's ``_tokenize`` is wrapped)."""
    original = adapter._tokenize

    def tokenize(batch: list[ModelInput]) -> Any:
        text = original(batch)
        _SELECTED.set(
            [
                torch.isin(index, torch.as_tensor(sorted(words(inp)), dtype=torch.long))
                for index, inp in zip(text.word_index, batch, strict=True)
            ]
        )
        return text

    adapter._tokenize = tokenize
    try:
        yield
    finally:
        del adapter._tokenize  # the class's method again
        _SELECTED.set(None)


def _selected_text(width: int, device: torch.device) -> torch.Tensor:
    """``(B, width)``: the selected text tokens of each example, from position 0 (text first)."""
    selected = _SELECTED.get()
    if selected is None:
        raise RuntimeError("intervention: word tokens are erased only inside selecting_words")
    out = torch.zeros(len(selected), width, dtype=torch.bool, device=device)
    for b, row in enumerate(selected):
        out[b, : row.shape[0]] = row.to(device)
    return out


def _layer_output(model: nn.Module, layer: int) -> nn.Module:
    return model.encoder.layer[layer - 1].output  # type: ignore[union-attr,index]


def visualbert_site(model: nn.Module, layer: int, tokens: str) -> tuple[nn.Module, MaskFn]:
    """``[text (padded); regions (padded)]`` at every layer, the embeddings included."""

    def regions(kw: Mapping[str, Any]) -> torch.Tensor | None:
        visual = kw.get("visual_attention_mask")
        if visual is None:  # no example of the batch has regions
            return None
        text = torch.zeros_like(kw["input_ids"], dtype=torch.bool)
        return torch.cat([text, visual.bool()], dim=1)

    def words(kw: Mapping[str, Any]) -> torch.Tensor:
        text = _selected_text(kw["input_ids"].shape[1], kw["input_ids"].device)
        visual = kw.get("visual_attention_mask")
        return text if visual is None else torch.cat([text, torch.zeros_like(visual.bool())], 1)

    module = model.embeddings if layer == 0 else _layer_output(model, layer)
    return module, regions if tokens == "regions" else words  # type: ignore[return-value]


def uniter_site(model: nn.Module, layer: int, tokens: str) -> tuple[nn.Module, MaskFn]:
    """Layer 0: the region embeddings ``(B, N, d)`` (the text embeddings ``(B, Lt, d)`` for
    words); above, ``[text; regions]`` per example, joined without padding
    (``join_without_padding``): the text tokens first in every example."""

    def region_inputs(kw: Mapping[str, Any]) -> torch.Tensor | None:
        mask = kw.get("img_mask")
        return None if mask is None else mask.bool()

    def joined(kw: Mapping[str, Any]) -> torch.Tensor | None:
        image = kw.get("img_mask")
        if image is None or image.shape[1] == 0:
            return None
        n_text, n_image = kw["attention_mask"].sum(1), image.sum(1)
        pos = torch.arange(int((n_text + n_image).max()), device=image.device)[None]
        return (pos >= n_text[:, None]) & (pos < (n_text + n_image)[:, None])

    def words(kw: Mapping[str, Any]) -> torch.Tensor:
        image, width = kw.get("img_mask"), kw["input_ids"].shape[1]
        if layer and image is not None and image.shape[1]:  # joined without padding
            width = int((kw["attention_mask"].sum(1) + image.sum(1)).max())
        return _selected_text(width, kw["input_ids"].device)

    if tokens == "words":
        return (model.embeddings if layer == 0 else _layer_output(model, layer)), words
    if layer == 0:
        return model.img_embeddings, region_inputs  # type: ignore[return-value]
    return _layer_output(model, layer), joined


def lxmert_site(model: nn.Module, layer: int, tokens: str) -> tuple[nn.Module, MaskFn]:
    """Regions: the vision encoder (layer 0: ``visn_fc``, the projected features + boxes; ``k``:
    the output of ``r_layers[k - 1]``), every padded region row but the all-zero dummy region a
    text-only input gets; words: the language encoder (layer 0: the text embeddings), text
    first. Each is the state its cached stream holds at that layer, and the cross encoder reads
    the erased states through the layers above."""
    encoder = model.encoder  # type: ignore[union-attr]

    def regions(kw: Mapping[str, Any]) -> torch.Tensor:
        feats, boxes = kw["visual_feats"], kw["visual_pos"]
        dummy = (feats == 0).all(-1) & (
            boxes == torch.as_tensor(DUMMY_BOX, device=boxes.device)
        ).all(-1)
        return kw["visual_attention_mask"].bool() & ~dummy

    def words(kw: Mapping[str, Any]) -> torch.Tensor:
        return _selected_text(kw["input_ids"].shape[1], kw["input_ids"].device)

    if tokens == "regions":
        return (encoder.visn_fc if layer == 0 else encoder.r_layers[layer - 1]), regions
    return (model.embeddings if layer == 0 else encoder.layer[layer - 1]), words  # type: ignore[return-value]


#: model classes whose region tokens can be erased, and how
SITES: dict[type, SiteFn] = {
    VisualBertModel: visualbert_site,
    UniterModel: uniter_site,
    LxmertModel: lxmert_site,
}


def hookable_layers(model: nn.Module, tokens: str) -> int:
    """The highest hidden layer ``tokens`` can be erased at (LXMERT: that encoder's own)."""
    config = model.config  # type: ignore[union-attr]
    if isinstance(model, LxmertModel):
        return int(config.r_layers if tokens == "regions" else config.l_layers)
    return int(config.num_hidden_layers)


def site_for(model: nn.Module, layer: int, tokens: str = "regions") -> tuple[nn.Module, MaskFn]:
    """The hook site of hidden layer ``layer``, or one line saying what can be intervened on."""
    if tokens not in TOKENS:
        raise ValueError(f"intervention: tokens={tokens!r}; valid: {', '.join(TOKENS)}")
    site = next((fn for cls, fn in SITES.items() if isinstance(model, cls)), None)
    if site is None:
        raise ValueError(
            f"intervention: {type(model).__name__} has no single-stream layer to erase region "
            "states in (ViLT has patches, not regions); supported: visualbert-minilm, "
            "visualbert, uniter, uniter-mini (every hidden layer), lxmert (its vision and "
            "language encoders' layers)"
        )
    layers = hookable_layers(model, tokens)
    if not 0 <= layer <= layers:
        raise ValueError(f"intervention.layer={layer}: the model has hidden layers 0-{layers}")
    return site(model, layer, tokens)


@contextmanager
def erasing(
    model: nn.Module, eraser: Eraser, layer: int, tokens: str = "regions"
) -> Iterator[None]:
    """Within the block, every forward of ``model`` erases its region states at ``layer``
    (``tokens="words"``: the tokens :func:`selecting_words` marks)."""
    module, mask_of = site_for(model, layer, tokens)
    if eraser.dim != int(model.config.hidden_size):
        raise ValueError(
            f"intervention: the eraser is {eraser.dim}-d, the model's states "
            f"{model.config.hidden_size}-d (fitted on another model's cache?)"
        )
    state: dict[str, torch.Tensor | None] = {"mask": None}

    def capture(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        if args:
            raise TypeError("intervention: the model must be called with keyword arguments")
        state["mask"] = mask_of(kwargs)

    def erase(_module: nn.Module, _inputs: tuple, output: Any) -> Any:
        mask = state["mask"]
        hidden = output[0] if isinstance(output, tuple) else output
        if mask is None or not bool(mask.any()):
            return output
        if mask.shape != hidden.shape[:2]:
            raise RuntimeError(
                f"intervention: mask {tuple(mask.shape)} does not fit the states "
                f"{tuple(hidden.shape)} at layer {layer}"
            )
        erased = hidden.clone()
        erased[mask] = eraser.apply(hidden[mask])
        return (erased, *output[1:]) if isinstance(output, tuple) else erased

    handles = [
        model.register_forward_pre_hook(capture, with_kwargs=True),
        module.register_forward_hook(erase),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
