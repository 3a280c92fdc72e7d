"""Apply an eraser inside a model's forward pass, at one hidden layer, to one modality's tokens.

A forward pre-hook on the model reads the batch's masks (which sequence positions are region
tokens); a forward hook on the module that produces hidden layer ``L`` replaces those positions'
states with erased ones, so every layer above computes on them and the cached layer ``L`` holds
them. Layer ``L >= 1`` is the output sub-module of transformer layer ``L`` (``layer.output``:
VisualBERT calls the layer, UNITER its parts, and both call this); layer 0 is the module
that embeds the regions.

Single-stream models only: LXMERT's cross-modality layers take two streams, ViLT's image
tokens are patches, not regions; those are refused with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import VisualBertModel

from vlprobe.intervention.erasers import Eraser
from vlprobe.models.uniter import UniterModel

#: the forward's keyword arguments -> (B, S) bool mask of the positions to erase
MaskFn = Callable[[Mapping[str, Any]], torch.Tensor | None]
#: (model, hidden layer) -> (module whose output is that layer's states, its mask)
SiteFn = Callable[[nn.Module, int], tuple[nn.Module, MaskFn]]


def _layer_output(model: nn.Module, layer: int) -> nn.Module:
    return model.encoder.layer[layer - 1].output  # type: ignore[union-attr,index]


def visualbert_site(model: nn.Module, layer: int) -> tuple[nn.Module, MaskFn]:
    """``[text (padded); regions (padded)]`` at every layer, the embeddings included."""

    def regions(kw: Mapping[str, Any]) -> torch.Tensor | None:
        visual = kw.get("visual_attention_mask")
        if visual is None:  # no example of the batch has regions
            return None
        text = torch.zeros_like(kw["input_ids"], dtype=torch.bool)
        return torch.cat([text, visual.bool()], dim=1)

    module = model.embeddings if layer == 0 else _layer_output(model, layer)
    return module, regions  # type: ignore[return-value]


def uniter_site(model: nn.Module, layer: int) -> tuple[nn.Module, MaskFn]:
    """Layer 0: the region embeddings ``(B, N, d)``; above, ``[text; regions]`` per example,
    joined without padding (``join_without_padding``)."""

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

    if layer == 0:
        return model.img_embeddings, region_inputs  # type: ignore[return-value]
    return _layer_output(model, layer), joined


#: model classes whose region tokens can be erased, and how
SITES: dict[type, SiteFn] = {VisualBertModel: visualbert_site, UniterModel: uniter_site}


def site_for(model: nn.Module, layer: int) -> tuple[nn.Module, MaskFn]:
    """The hook site of hidden layer ``layer``, or one line saying what can be intervened on."""
    site = next((fn for cls, fn in SITES.items() if isinstance(model, cls)), None)
    if site is None:
        raise ValueError(
            f"intervention: {type(model).__name__} has no single-stream layer to erase region "
            "states in (LXMERT's cross-modality layers take two streams; ViLT has patches, not "
            "regions); supported: visualbert-minilm, visualbert, uniter, uniter-mini, "
            "every hidden layer 0..num_layers"
        )
    layers = int(model.config.num_hidden_layers)
    if not 0 <= layer <= layers:
        raise ValueError(f"intervention.layer={layer}: the model has hidden layers 0-{layers}")
    return site(model, layer)


@contextmanager
def erasing(model: nn.Module, eraser: Eraser, layer: int) -> Iterator[None]:
    """Within the block, every forward of ``model`` erases its region states at ``layer``."""
    module, mask_of = site_for(model, layer)
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
