"""LXMERT: the hooked attention blocks are the model's own, and the layer scheme holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlprobe.models.base import ModelInput
from vlprobe.models.regions import normalised_boxes


def hf_outputs(adapter, batch):
    """The raw Hugging Face forward pass on the adapter's own inputs."""
    text = adapter._tokenize(batch)
    feats, boxes, vmask = adapter._visual_inputs(batch)
    with torch.no_grad():
        out = adapter.model(
            input_ids=text.input_ids,
            attention_mask=text.attention_mask,
            visual_feats=feats,
            visual_pos=boxes,
            visual_attention_mask=vmask.float(),
            output_attentions=True,
            output_hidden_states=True,
        )
    return text, vmask, out


def additive(mask: torch.Tensor) -> torch.Tensor:
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def test_blocks_are_the_models_attentions(tiny_adapters, make_input):
    adapter = tiny_adapters["lxmert"]
    batch = [make_input(n_regions=4), make_input("two dogs", n_regions=2, seed=1)]
    encoded = adapter.encode(batch)
    text, vmask, out = hf_outputs(adapter, batch)
    n_l, n_r = adapter.config.l_layers, adapter.config.r_layers

    # text->image: HF's cross_encoder_attentions, for every cross layer
    for b, ex in enumerate(encoded):
        nt, nr = len(text.word_index[b]), len(ex.region_tokens)
        for k in range(adapter.num_layers):
            hf = out.cross_encoder_attentions[k][b][:, :nt, :nr]
            torch.testing.assert_close(2 * ex.attentions[k][:, :nt, nt:], hf, atol=1e-5, rtol=0)

    # the other three blocks of cross layer 1, recomputed from its inputs
    layer = adapter.model.encoder.x_layers[0]
    lang, vis = out.language_hidden_states[n_l - 1], out.vision_hidden_states[n_r - 1]
    lmask, imask = additive(text.attention_mask), additive(vmask)
    with torch.no_grad():
        image_to_text = layer.visual_attention.att(vis, lang, lmask, output_attentions=True)[1]
        lang_x = layer.visual_attention(lang, vis, imask)[0]
        vis_x = layer.visual_attention(vis, lang, lmask)[0]
        text_self = layer.lang_self_att.self(lang_x, lang_x, lmask, output_attentions=True)[1]
        image_self = layer.visn_self_att.self(vis_x, vis_x, imask, output_attentions=True)[1]
    for b, ex in enumerate(encoded):
        nt, nr = len(text.word_index[b]), len(ex.region_tokens)
        att = 2 * ex.attentions[0]
        torch.testing.assert_close(att[:, :nt, :nt], text_self[b][:, :nt, :nt], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            att[:, nt:, :nt], image_to_text[b][:, :nr, :nt], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(att[:, nt:, nt:], image_self[b][:, :nr, :nr], atol=1e-5, rtol=0)
        # hidden: X00 = the streams' last single-modality layers, X01.. = cross layer outputs
        torch.testing.assert_close(ex.hidden[0, :nt], lang[b, :nt], atol=1e-5, rtol=0)
        torch.testing.assert_close(ex.hidden[0, nt:], vis[b, :nr], atol=1e-5, rtol=0)
        last_text = out.language_hidden_states[-1][b, :nt]
        torch.testing.assert_close(ex.hidden[-1, :nt], last_text, atol=1e-5, rtol=0)
        last_image = out.vision_hidden_states[-1][b, :nr]
        torch.testing.assert_close(ex.hidden[-1, nt:], last_image, atol=1e-5, rtol=0)


def test_layer_names_and_region_tokens(tiny_adapters, make_input):
    adapter = tiny_adapters["lxmert"]
    assert adapter.layer_names == ["X00", "X01", "X02"]
    assert adapter.model_kind == "two-stream"
    (ex,) = adapter.encode([make_input(n_regions=3)])
    nt = int((ex.modality == 0).sum())
    assert ex.region_tokens == [[nt], [nt + 1], [nt + 2]]


def test_boxes_are_normalised_by_image_size():
    inp = ModelInput(
        words=["x"],
        region_features=np.zeros((1, 4), np.float32),
        region_boxes=np.array([[10, 20, 50, 40]], np.float32),
        image_size=(100, 80),
    )
    np.testing.assert_allclose(normalised_boxes(inp), [[0.1, 0.25, 0.5, 0.5]])


def test_text_only_uses_a_hidden_dummy_region(tiny_adapters):
    adapter = tiny_adapters["lxmert"]
    inp = ModelInput(words=["a", "dog", "runs"])
    (ex,) = adapter.encode([inp])
    assert (ex.modality == 0).all() and ex.hidden.shape[1] == 5
    _, boxes, vmask = adapter._visual_inputs([inp])
    assert boxes.tolist() == [[[0.0, 0.0, 1.0, 1.0]]] and vmask.tolist() == [[1]]


def test_stream_outputs_match_hf(tiny_adapters, make_input):
    adapter = tiny_adapters["lxmert"]
    batch = [make_input(n_regions=3)]
    adapter.with_streams = True
    try:
        (ex,) = adapter.encode(batch)
    finally:
        adapter.with_streams = False
    text, _, out = hf_outputs(adapter, batch)
    nt, n_l, n_r = len(text.word_index[0]), adapter.config.l_layers, adapter.config.r_layers
    assert ex.language_hidden.shape == (n_l + 1, nt, adapter.hidden_size)
    assert ex.vision_hidden.shape == (n_r + 1, 3, adapter.hidden_size)
    torch.testing.assert_close(
        ex.language_attentions[-1], out.language_attentions[-1][0][:, :nt, :nt], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        ex.vision_hidden[-1], out.vision_hidden_states[n_r - 1][0, :3], atol=1e-5, rtol=0
    )


def test_each_stream_is_its_own_named_sequence(make_input):
    from vlprobe.testing.models import build_adapter, tiny_config

    config = {**tiny_config("lxmert", feature_dim=16), "l_layers": 3, "r_layers": 2}
    streams = {
        s: build_adapter("lxmert", config=config, stream=s) for s in ("language", "vision", "cross")
    }
    assert streams["language"].layer_names == ["lang00", "lang01", "lang02", "lang03"]
    assert streams["vision"].layer_names == ["vis00", "vis01", "vis02"]
    assert streams["cross"].layer_names == ["X00", "X01", "X02"]
    assert streams["language"].name == "lxmert-language" and streams["cross"].name == "lxmert"

    image_text = make_input(n_regions=3)
    text_only = make_input("a dog runs on grass", n_regions=0)
    full = streams["cross"]
    full.with_streams = True
    try:
        (pair,) = full.encode([image_text])
        (sentence,) = full.encode([text_only])
    finally:
        full.with_streams = False

    (vis,) = streams["vision"].encode([image_text])
    assert vis.modality.tolist() == [1, 1, 1] and vis.region_tokens == [[0], [1], [2]]
    assert (vis.word_index == -1).all()
    torch.testing.assert_close(vis.hidden, pair.vision_hidden, atol=1e-6, rtol=0)
    torch.testing.assert_close(vis.attentions, pair.vision_attentions, atol=1e-6, rtol=0)
    assert vis.hidden.shape[0] == 3 and vis.attentions.shape[:2] == (2, 4)

    (lang,) = streams["language"].encode([text_only])
    assert (lang.modality == 0).all() and lang.region_tokens == []
    torch.testing.assert_close(lang.hidden, sentence.language_hidden, atol=1e-6, rtol=0)
    torch.testing.assert_close(lang.attentions, sentence.language_attentions, atol=1e-6, rtol=0)
    assert lang.hidden.shape[0] == 4

    with pytest.raises(ValueError, match="text tokens only"):
        streams["language"].encode([image_text])
    with pytest.raises(ValueError, match="needs regions"):
        streams["vision"].encode([text_only])
    with pytest.raises(ValueError, match="model.stream='both'"):
        build_adapter("lxmert", config=config, stream="both")
