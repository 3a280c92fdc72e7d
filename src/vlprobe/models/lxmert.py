"""LXMERT (two-stream) mapped onto uniform token sequences, one per encoder (stream).

The cross stream (``layer_names = ["X00", "X01", ...]``) is the cross-modality encoder, where
the two modalities meet, as one ``[text; image]`` sequence:

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

``model.stream`` picks the streams an extraction caches, each a sequence of its own whose
layer names say which stream it is (``all``, the default: every stream, in one cache, each in
its own group: docs/cache_format.md):

* ``cross``: the cross-modality layers above, ``X00``..``X0k``; text and image tokens.
* ``language``: the language encoder over the text tokens only, ``lang00`` (its input, the
  text embeddings) .. ``lang09``. Image-text data gives its text tokens (phrases, no regions).
* ``vision``: the object-relationship encoder over the region tokens only, ``vis00`` (its
  input, the projected features + boxes) .. ``vis05``; region ``i`` is token ``i``. No text
  token exists, so nothing phrase- or ``[CLS]``-based can be probed on it. Written only for
  data with regions.

:meth:`LxmertAdapter.encode_streams` returns every cached stream of one forward pass;
:meth:`encode` the first of them (``cross`` whenever it is cached), as every adapter does.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from transformers import LxmertConfig, LxmertModel, PreTrainedModel, PreTrainedTokenizerBase

from vlprobe.models.base import EncodedExample, ModelInput
from vlprobe.models.hf_adapter import HFAdapter, make_example, to_output
from vlprobe.models.regions import check_features, normalised_boxes, num_regions, pad_rows

DUMMY_BOX = np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
# stream -> (its number of layers in the config, its layer-name prefix, the modalities it holds)
STREAMS = {
    "cross": ("x_layers", "X", ("text", "image")),
    "language": ("l_layers", "lang", ("text",)),
    "vision": ("r_layers", "vis", ("image",)),
}


def parse_streams(stream: str | Sequence[str]) -> tuple[str, ...]:
    """``model.stream``: ``all``, one stream or a list of them, in :data:`STREAMS` order."""
    asked = list(STREAMS) if stream == "all" else [stream] if isinstance(stream, str) else stream
    unknown = [s for s in asked if s not in STREAMS]
    if unknown or not asked:
        raise ValueError(
            f"model.stream={stream!r}: choose all, one of {list(STREAMS)} or a list of them"
        )
    return tuple(s for s in STREAMS if s in asked)


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

    streams: tuple[str, ...] = ("cross",)  # what extraction caches (model.stream), in order

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, **kw: Any):
        super().__init__(model, tokenizer, **kw)
        if int(self.config.x_layers) < 1:
            raise ValueError("LXMERT needs at least one cross-modality layer")

    @classmethod
    def build(cls, *args: Any, stream: str | Sequence[str] = "all", **kwargs: Any) -> LxmertAdapter:
        """``HFAdapter.build`` plus ``model.stream`` (the streams the cache holds)."""
        adapter = super().build(*args, **kwargs)
        assert isinstance(adapter, LxmertAdapter)
        adapter.streams = parse_streams(stream)
        return adapter

    @property
    def stream(self) -> str:
        """The stream :meth:`encode` returns: ``cross`` whenever it is cached."""
        return self.streams[0]

    def stream_num_layers(self, stream: str) -> int:
        return int(getattr(self.config, STREAMS[stream][0]))

    def stream_layer_names(self, stream: str) -> list[str]:
        prefix = STREAMS[stream][1]
        return [f"{prefix}{k:02d}" for k in range(self.stream_num_layers(stream) + 1)]

    def stream_modalities(self, stream: str) -> tuple[str, ...]:
        return STREAMS[stream][2]

    @property
    def num_layers(self) -> int:
        return self.stream_num_layers(self.stream)

    @property
    def layer_names(self) -> list[str]:
        return self.stream_layer_names(self.stream)

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

    def encode_streams(self, batch: list[ModelInput]) -> list[dict[str, EncodedExample]]:
        """Every cached stream of each input, from one forward pass (CPU, float32).

        The vision stream is left out for an input without regions (it has no token)."""
        if not batch:
            return []
        with torch.inference_mode(), self._autocast():
            encoded = self._encode_all(batch)
        return [{s: to_output(e) for s, e in ex.items()} for ex in encoded]

    def _encode(self, batch: list[ModelInput]) -> list[EncodedExample]:
        out = []
        for streams in self._encode_all(batch):
            if self.stream not in streams:
                raise ValueError("LXMERT's vision stream needs regions: this input has none")
            out.append(streams[self.stream])
        return out

    def _encode_all(self, batch: list[ModelInput]) -> list[dict[str, EncodedExample]]:
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
        encoded = []
        for b, inp in enumerate(batch):
            word_index, n_reg = text.word_index[b], num_regions(inp)
            streams = {}
            if "cross" in self.streams:
                streams["cross"] = self._cross_example(rec, b, word_index, n_reg)
            if "language" in self.streams:
                streams["language"] = self._language_example(rec, out, b, word_index)
            if "vision" in self.streams and n_reg:
                streams["vision"] = self._vision_example(rec, out, b, n_reg)
            encoded.append(streams)
        return encoded

    def _language_example(
        self, rec: _Recorder, out: Any, b: int, word_index: torch.Tensor
    ) -> EncodedExample:
        """The language encoder over the text tokens; layer 0 = the text embeddings."""
        nt, n_l = int(word_index.shape[0]), self.stream_num_layers("language")
        assert rec.text_emb is not None
        states = [rec.text_emb, *out.language_hidden_states[:n_l]]
        hidden = torch.stack([h[b, :nt] for h in states])
        attn = _stack_square(out.language_attentions, b, nt, n_l)
        return make_example(hidden, attn, word_index, 0)

    def _vision_example(self, rec: _Recorder, out: Any, b: int, n_reg: int) -> EncodedExample:
        """The object-relationship encoder over the regions; layer 0 = the projected input."""
        n_r = self.stream_num_layers("vision")
        assert rec.image_emb is not None
        states = [rec.image_emb, *out.vision_hidden_states[:n_r]]
        hidden = torch.stack([h[b, :n_reg] for h in states])
        attn = _stack_square(out.vision_attentions, b, n_reg, n_r)
        no_text = torch.empty(0, dtype=torch.long)
        return make_example(hidden, attn, no_text, n_reg, [[i] for i in range(n_reg)])

    def _cross_example(
        self, rec: _Recorder, b: int, word_index: torch.Tensor, n_reg: int
    ) -> EncodedExample:
        nt = int(word_index.shape[0])
        assert rec.x_input is not None
        states = [rec.x_input, *rec.x_output]
        hidden = torch.stack([torch.cat([t[b, :nt], v[b, :n_reg]]) for t, v in states])
        layers = []
        for k in range(self.stream_num_layers("cross")):
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
        return make_example(hidden, torch.stack(layers), word_index, n_reg, regions)


def _stack_square(attn: tuple[torch.Tensor, ...], b: int, n: int, count: int) -> torch.Tensor:
    """The first ``count`` layers' (H, n, n) blocks of example ``b``, padding removed."""
    return torch.stack([a[b][:, :n, :n] for a in attn[:count]])
