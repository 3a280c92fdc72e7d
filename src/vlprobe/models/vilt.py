"""ViLT: one transformer over text tokens and raw image patches (no detector).

Token order: ``[CLS] words [SEP]`` (at most ``max_position_embeddings`` = 40 subwords),
then the image tokens: ViLT's image [CLS]-like token followed by every patch in raster
order (row-major over the resized image's patch grid).

Images are resized the ViLT way (shorter side to ``image_size``, longer side capped at
1333/800 of it, both rounded down to multiples of the patch size; mean = std = 0.5) by
``ViltImageProcessorPil``, built offline from the model config unless the checkpoint ships
its own. Patch embeddings are computed here with the model's own modules exactly as
``ViltEmbeddings.visual_embed`` does, but keeping all patches in raster order: HF samples
(and, for the largest image of a batch, shuffles) patches at random, which would make the
token order non-deterministic. The transformer is permutation-equivariant, so the values
are the model's.

Regions: ``region_tokens[i]`` = the patches whose centre lies inside box ``i`` (scaled to
the resized image), or, if none does, the patch containing the box centre.

Text-only input (no ``image_path``): the image slot holds only the image [CLS] token and it
is masked out, so text attends to text alone; no image token is returned.
Hidden states are the residual stream before ViLT's final LayerNorm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ViltConfig,
    ViltImageProcessorPil,
    ViltModel,
)

from vlprobe.models.base import EncodedExample, ModelInput
from vlprobe.models.hf_adapter import AutocastArg, HFAdapter, gather_tokens, make_example
from vlprobe.models.regions import num_regions


def default_image_processor(config: ViltConfig) -> ViltImageProcessorPil:
    """ViLT's preprocessing sized for this config: shorter side = image_size, grid = patch."""
    size = config.image_size if isinstance(config.image_size, int) else min(config.image_size)
    patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
    return ViltImageProcessorPil(size={"shortest_edge": int(size)}, size_divisor=int(patch))


def load_image_processor(name_or_path: str, config: ViltConfig) -> ViltImageProcessorPil:
    path = Path(name_or_path)
    if (path / "preprocessor_config.json").is_file():
        return ViltImageProcessorPil.from_pretrained(str(path), local_files_only=True)
    return default_image_processor(config)


def patches_in_box(box: np.ndarray, grid_h: int, grid_w: int, patch: int) -> list[int]:
    """Raster indices of patches whose centre is inside ``box`` (resized-image pixels).

    Falls back to the patch containing the box centre, so every region gets a token.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    centres_x = (np.arange(grid_w) + 0.5) * patch
    centres_y = (np.arange(grid_h) + 0.5) * patch
    cols = np.nonzero((centres_x >= x1) & (centres_x <= x2))[0]
    rows = np.nonzero((centres_y >= y1) & (centres_y <= y2))[0]
    if len(cols) and len(rows):
        return [int(r * grid_w + c) for r in rows for c in cols]
    col = int(np.clip((x1 + x2) / 2 // patch, 0, grid_w - 1))
    row = int(np.clip((y1 + y2) / 2 // patch, 0, grid_h - 1))
    return [row * grid_w + col]


class ViltAdapter(HFAdapter):
    name = "vilt"
    default_checkpoint = "dandelin/vilt-b32-mlm"
    model_kind = "single-stream"
    model_class = ViltModel
    config_class = ViltConfig

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        image_processor: ViltImageProcessorPil | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(model, tokenizer, **kw)
        self.image_processor = image_processor or default_image_processor(self.config)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        name_or_path: str | Path,
        device: str | torch.device = "cpu",
        *,
        autocast_dtype: AutocastArg = "auto",
        max_text_length: int | None = None,
        **hf_kwargs: Any,
    ) -> ViltAdapter:
        adapter = super().from_pretrained(
            name_or_path,
            device,
            autocast_dtype=autocast_dtype,
            max_text_length=max_text_length,
            **hf_kwargs,
        )
        assert isinstance(adapter, ViltAdapter)
        adapter.image_processor = load_image_processor(str(name_or_path), adapter.config)
        return adapter

    def save_pretrained(self, folder: str | Path) -> None:
        super().save_pretrained(folder)
        self.image_processor.save_pretrained(str(folder))

    @property
    def patch_size(self) -> int:
        patch = self.config.patch_size
        return int(patch if isinstance(patch, int) else patch[0])

    def _image_tokens(self, inp: ModelInput) -> tuple[torch.Tensor, list[list[int]]]:
        """(1 + patches, d) image-token embeddings and each region's patch token offsets."""
        emb = self.model.embeddings
        if inp.image_path is None:
            if num_regions(inp):
                raise ValueError("ViLT reads pixels: regions need an image_path")
            return (emb.cls_token[0] + emb.position_embeddings[0, :1]), []
        image = Image.open(inp.image_path).convert("RGB")
        pixels = self.image_processor(images=image, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, emb.patch_embeddings.projection.weight.dtype)
        grid = emb.patch_embeddings(pixels)  # (1, d, gh, gw)
        _, dim, grid_h, grid_w = grid.shape
        side = self.config.image_size // self.patch_size
        spatial = emb.position_embeddings[:, 1:, :].transpose(1, 2).reshape(1, dim, side, side)
        spatial = torch.nn.functional.interpolate(
            spatial, size=(grid_h, grid_w), mode="bilinear", align_corners=True
        )
        patches = (grid + spatial).flatten(2).transpose(1, 2)[0]
        cls = emb.cls_token[0] + emb.position_embeddings[0, :1]
        tokens = torch.cat([cls, patches])

        regions: list[list[int]] = []
        if num_regions(inp):
            width, height = inp.image_size or image.size
            scale = np.array([grid_w * self.patch_size / width, grid_h * self.patch_size / height])
            boxes = np.asarray(inp.region_boxes, dtype=np.float32).reshape(-1, 4)
            boxes = boxes * np.tile(scale, 2)
            regions = [
                [1 + p for p in patches_in_box(box, grid_h, grid_w, self.patch_size)]
                for box in boxes
            ]
        return tokens, regions

    def _encode(self, batch: list[ModelInput]) -> list[EncodedExample]:
        text = self._tokenize(batch)
        images = [self._image_tokens(inp) for inp in batch]
        longest = max(t.shape[0] for t, _ in images)
        embeds = torch.zeros(len(batch), longest, self.hidden_size, device=self.device)
        mask = torch.zeros(len(batch), longest, dtype=torch.long, device=self.device)
        for b, ((tokens, _), inp) in enumerate(zip(images, batch, strict=True)):
            embeds[b, : tokens.shape[0]] = tokens
            mask[b, : tokens.shape[0]] = int(inp.image_path is not None)
        out = self.model(
            input_ids=text.input_ids.to(self.device),
            attention_mask=text.attention_mask.to(self.device),
            token_type_ids=text.token_type_ids.to(self.device),
            image_embeds=embeds,
            pixel_mask=mask,
            output_hidden_states=True,
            output_attentions=True,
        )
        text_len = text.input_ids.shape[1]
        examples = []
        for b, (tokens, regions) in enumerate(images):
            word_index = text.word_index[b]
            n_text = int(word_index.shape[0])
            n_image = tokens.shape[0] if batch[b].image_path is not None else 0
            keep = torch.cat([torch.arange(n_text), text_len + torch.arange(n_image)])
            hidden, attn = gather_tokens(out.hidden_states, out.attentions, b, keep.to(self.device))
            shifted = [[n_text + t for t in r] for r in regions]
            examples.append(make_example(hidden, attn, word_index, n_image, shifted))
        return examples
