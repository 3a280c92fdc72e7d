"""LXMERT (two-stream) mapped onto the uniform single ``[text; image]`` sequence.

Layer scheme (``layer_names = ["X00", "X01", ...]``), over the cross-modality encoder only,
where the two modalities meet:

* ``hidden[0]`` ("X00"): the cross encoder's input: text = output of the last language
  layer, image = output of the last vision (relational) layer.
* ``hidden[k]`` ("X0k"): output of cross layer ``k``, text from the language stream and
  image from the vision stream.
* ``attentions[k - 1]``: cross layer ``k`` as one ``[text; image]`` matrix with blocks
  text->text (the layer's language self-attention), text->image (language->vision cross
  attention), image->text (vision->language cross attention), image->image (vision
  self-attention). Each token has two softmaxes (self and cross); both are weighted
  equally, so every row is halved and sums to 1. The self block comes from the
  layer's self-attention, which runs after the cross-attention within the same layer.

Hugging Face returns only the text->image block (``cross_encoder_attentions``): the rest is
captured by forward hooks on each attention's dropout module, whose input is exactly the
softmax output (dropout is the identity in eval mode). The cross-attention module is shared
by both directions and called text-query first, then image-query.

Text-only input (no regions): LXMERT cannot run without visual input, so one all-zero
region with box [0, 0, 1, 1] is fed. It is not returned: the example has text tokens only,
and its attention is the language self-attention of each cross layer (rows sum to 1).

``adapter.with_streams = True`` also returns the language-only and vision-only layers
(:class:`LxmertEncodedExample`).

``adapter.stream`` picks which stream an extraction caches (``model.stream``), each a
sequence of its own with layer names saying which stream it is:

* ``"cross"`` (default): the cross-modality layers above, ``X00``..``X0k``.
* ``"language"``: the language encoder over the text tokens only, ``lang00`` (its input,
  the text embeddings) .. ``lang09``; for text-only data (the linguistic probes).
* ``"vision"``: the object-relationship encoder over the region tokens only, ``vis00`` (its
  input, the projected features + boxes) .. ``vis05``; regions ``i`` is token ``i``. No text
  token exists, so nothing phrase- or ``[CLS]``-based can be probed on it.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import LxmertConfig, LxmertModel, PreTrainedModel, PreTrainedTokenizerBase

from vlprobe.models.base import EncodedExample, ModelInput
from vlprobe.models.hf_adapter import HFAdapter, make_example
from vlprobe.models.regions import check_features, normalised_boxes, num_regions, pad_rows

DUMMY_BOX = np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
STREAMS = {
    "cross": ("x_layers", "X"),
    "language": ("l_layers", "lang"),
    "vision": ("r_layers", "vis"),
}


@dataclass
class LxmertEncodedExample(EncodedExample):
    """Adds the single-modality encoders (``with_streams=True``); layer 0 = their input."""

    language_hidden: torch.Tensor | None = None  # (l_layers + 1, n_text, d)
    language_attentions: torch.Tensor | None = None  # (l_layers, H, n_text, n_text)
    vision_hidden: torch.Tensor | None = None  # (r_layers + 1, n_regions, d)
    vision_attentions: torch.Tensor | None = None  # (r_layers, H, n_regions, n_regions)


class _Recorder:
    """What the hooks saw during one forward pass, per cross layer."""

    def __init__(self) -> None:
        self.x_input: tuple[torch.Tensor, torch.Tensor] | None = None
        self.x_output: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.text_self: dict[int, torch.Tensor] = {}
        self.image_self: dict[int, torch.Tensor] = {}
        self.cross: dict[int, list[torch.Tensor]] = defaultdict(list)
        self.text_emb: torch.Tensor | None = None
        self.image_emb: torch.Tensor | None = None


@contextlib.contextmanager
def record_cross_layers(model: LxmertModel) -> Iterator[_Recorder]:
    """Hooks live only for the duration of one forward call."""
    rec = _Recorder()
    handles = []

    def on_x_input(_m: Any, args: tuple) -> None:
        if rec.x_input is None:
            rec.x_input = (args[0], args[2])

    def on_x_output(_m: Any, _args: tuple, out: tuple) -> None:
        rec.x_output.append((out[0], out[1]))

    def store(target: dict, k: int) -> Any:
        def hook(_m: Any, _args: tuple, probs: torch.Tensor) -> None:
            target[k] = probs

        return hook

    def append_cross(k: int) -> Any:
        def hook(_m: Any, _args: tuple, probs: torch.Tensor) -> None:
            rec.cross[k].append(probs)

        return hook

    def on_text_emb(_m: Any, _args: tuple, out: torch.Tensor) -> None:
        rec.text_emb = out

    def on_image_emb(_m: Any, _args: tuple, out: torch.Tensor) -> None:
        rec.image_emb = out

    x_layers = model.encoder.x_layers
    handles.append(x_layers[0].register_forward_pre_hook(on_x_input))
    handles.append(model.embeddings.register_forward_hook(on_text_emb))
    handles.append(model.encoder.visn_fc.register_forward_hook(on_image_emb))
    for k, layer in enumerate(x_layers):
        handles += [
            layer.register_forward_hook(on_x_output),
            layer.lang_self_att.self.dropout.register_forward_hook(store(rec.text_self, k)),
            layer.visn_self_att.self.dropout.register_forward_hook(store(rec.image_self, k)),
            layer.visual_attention.att.dropout.register_forward_hook(append_cross(k)),
        ]
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


class LxmertAdapter(HFAdapter):
    name = "lxmert"
    default_checkpoint = "unc-nlp/lxmert-base-uncased"
    model_kind = "two-stream"
    model_class = LxmertModel
    config_class = LxmertConfig

    with_streams: bool = False  # set True to also get the single-modality layers
    stream: str = "cross"  # which stream encode() returns as the example: see STREAMS

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, **kw: Any):
        super().__init__(model, tokenizer, **kw)
        if int(self.config.x_layers) < 1:
            raise ValueError("LXMERT needs at least one cross-modality layer")

    @classmethod
    def build(cls, *args: Any, stream: str = "cross", **kwargs: Any) -> LxmertAdapter:
        """``HFAdapter.build`` plus ``model.stream`` (which stream the cache holds)."""
        adapter = super().build(*args, **kwargs)
        assert isinstance(adapter, LxmertAdapter)
        adapter.set_stream(stream)
        return adapter

    def set_stream(self, stream: str) -> None:
        if stream not in STREAMS:
            raise ValueError(f"model.stream={stream!r}: choose one of {list(STREAMS)}")
        self.stream = stream
        if stream != "cross":
            self.name = f"{type(self).name}-{stream}"

    @property
    def num_layers(self) -> int:
        return int(getattr(self.config, STREAMS[self.stream][0]))

    @property
    def layer_names(self) -> list[str]:
        prefix = STREAMS[self.stream][1]
        return [f"{prefix}{k:02d}" for k in range(self.num_layers + 1)]

    @property
    def feature_dim(self) -> int:
        return int(self.config.visual_feat_dim)

    def _visual_inputs(self, batch: list[ModelInput]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        feats, boxes = [], []
        for inp in batch:
            if num_regions(inp):
                feats.append(check_features(inp, self.feature_dim, self.name))
                boxes.append(normalised_boxes(inp))
            else:
                feats.append(np.zeros((1, self.feature_dim), np.float32))
                boxes.append(DUMMY_BOX)
        feat_t, mask = pad_rows(feats, self.feature_dim)
        box_t, _ = pad_rows(boxes, 4)
        return feat_t, box_t, mask

    def _encode(self, batch: list[ModelInput]) -> list[EncodedExample]:
        text = self._tokenize(batch)
        feats, boxes, vmask = self._visual_inputs(batch)
        inputs = {
            "input_ids": text.input_ids,
            "attention_mask": text.attention_mask,
            "token_type_ids": text.token_type_ids,
            "visual_feats": feats,
            "visual_pos": boxes,
            "visual_attention_mask": vmask.float(),
        }
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with record_cross_layers(self.model) as rec:
            out = self.model(**inputs, output_attentions=True, output_hidden_states=True)
        if self.stream != "cross":
            return [
                self._stream_example(rec, out, b, text.word_index[b], num_regions(inp))
                for b, inp in enumerate(batch)
            ]
        return [
            self._example(rec, out, b, text.word_index[b], num_regions(inp))
            for b, inp in enumerate(batch)
        ]

    def _stream_example(
        self, rec: _Recorder, out: Any, b: int, word_index: torch.Tensor, n_reg: int
    ) -> EncodedExample:
        """One single-modality stream as the example (``self.stream``: language or vision)."""
        streams = self._streams(rec, out, b, int(word_index.shape[0]), n_reg)
        if self.stream == "language":
            if n_reg:
                raise ValueError(
                    "LXMERT's language stream holds text tokens only: probe it on text-only "
                    "data (task=linguistic/...), or use model.stream=cross for image-text data"
                )
            hidden, attn = streams["language_hidden"], streams["language_attentions"]
            return make_example(hidden, attn, word_index, 0)
        if not n_reg:
            raise ValueError("LXMERT's vision stream needs regions: this input has none")
        hidden, attn = streams["vision_hidden"], streams["vision_attentions"]
        no_text = torch.empty(0, dtype=torch.long)
        return make_example(hidden, attn, no_text, n_reg, [[i] for i in range(n_reg)])

    def _example(
        self, rec: _Recorder, out: Any, b: int, word_index: torch.Tensor, n_reg: int
    ) -> EncodedExample:
        nt = int(word_index.shape[0])
        assert rec.x_input is not None
        states = [rec.x_input, *rec.x_output]
        hidden = torch.stack([torch.cat([t[b, :nt], v[b, :n_reg]]) for t, v in states])
        layers = []
        for k in range(self.num_layers):
            text_self = rec.text_self[k][b][:, :nt, :nt]
            if n_reg == 0:
                layers.append(text_self)
                continue
            text_to_image, image_to_text = rec.cross[k]
            top = torch.cat([text_self, text_to_image[b][:, :nt, :n_reg]], dim=-1)
            image_self = rec.image_self[k][b][:, :n_reg, :n_reg]
            bottom = torch.cat([image_to_text[b][:, :n_reg, :nt], image_self], dim=-1)
            layers.append(0.5 * torch.cat([top, bottom], dim=-2))
        regions = [[nt + i] for i in range(n_reg)]
        base = make_example(hidden, torch.stack(layers), word_index, n_reg, regions)
        if not self.with_streams:
            return base
        return LxmertEncodedExample(**vars(base), **self._streams(rec, out, b, nt, n_reg))

    def _streams(self, rec: _Recorder, out: Any, b: int, nt: int, n_reg: int) -> dict:
        n_l, n_r = int(self.config.l_layers), int(self.config.r_layers)
        assert rec.text_emb is not None and rec.image_emb is not None
        lang = [rec.text_emb, *out.language_hidden_states[:n_l]]
        streams = {
            "language_hidden": torch.stack([h[b, :nt] for h in lang]),
            "language_attentions": _stack_square(out.language_attentions, b, nt, len(lang) - 1),
        }
        if n_reg:
            vis = [rec.image_emb, *out.vision_hidden_states[:n_r]]
            streams["vision_hidden"] = torch.stack([h[b, :n_reg] for h in vis])
            streams["vision_attentions"] = _stack_square(out.vision_attentions, b, n_reg, n_r)
        return streams


def _stack_square(attn: tuple[torch.Tensor, ...], b: int, n: int, count: int) -> torch.Tensor:
    """The first ``count`` layers' (H, n, n) blocks of example ``b``, padding removed."""
    return torch.stack([a[b][:, :n, :n] for a in attn[:count]])
