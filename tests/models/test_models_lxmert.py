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


def test_streams_are_the_models_encoders(make_input):
    """``encode_streams``: each stream's layers and heads, equal to transformers' outputs."""
    from vlprobe.testing.models import build_adapter, tiny_config

    config = {**tiny_config("lxmert", feature_dim=16), "l_layers": 3, "r_layers": 2}
    adapter = build_adapter("lxmert", config=config)  # model.stream=all
    assert adapter.streams == ("cross", "language", "vision")
    assert adapter.stream_layer_names("language") == ["lang00", "lang01", "lang02", "lang03"]
    assert adapter.stream_layer_names("vision") == ["vis00", "vis01", "vis02"]
    assert adapter.layer_names == adapter.stream_layer_names("cross") == ["X00", "X01", "X02"]
    batch = [make_input(n_regions=3), make_input("a dog runs on grass", n_regions=0)]
    pair, sentence = adapter.encode_streams(batch)
    assert set(pair) == {"cross", "language", "vision"} and set(sentence) == {"cross", "language"}
    text, _, out = hf_outputs(adapter, batch)
    nt = len(text.word_index[0])
    lang, vis = pair["language"], pair["vision"]
    assert lang.hidden.shape == (4, nt, adapter.hidden_size) and (lang.modality == 0).all()
    assert lang.region_tokens == []
    for k in range(3):
        torch.testing.assert_close(lang.hidden[k + 1], out.language_hidden_states[k][0, :nt])
        torch.testing.assert_close(lang.attentions[k], out.language_attentions[k][0, :, :nt, :nt])
    assert vis.modality.tolist() == [1, 1, 1] and vis.region_tokens == [[0], [1], [2]]
    assert (vis.word_index == -1).all() and vis.attentions.shape[:2] == (2, 4)
    for k in range(2):
        torch.testing.assert_close(vis.hidden[k + 1], out.vision_hidden_states[k][0, :3])
        torch.testing.assert_close(vis.attentions[k], out.vision_attentions[k][0, :, :3, :3])
    # the cross stream is what encode() returns
    (cross, _) = adapter.encode(batch)
    torch.testing.assert_close(pair["cross"].hidden, cross.hidden)


def test_stream_filter(make_input):
    from vlprobe.testing.models import build_adapter, tiny_config

    config = tiny_config("lxmert", feature_dim=16)
    vision = build_adapter("lxmert", config=config, stream="vision")
    assert vision.streams == ("vision",) and vision.layer_names == ["vis00", "vis01"]
    (ex,) = vision.encode([make_input(n_regions=2)])
    assert ex.modality.tolist() == [1, 1]
    with pytest.raises(ValueError, match="needs regions"):
        vision.encode([make_input("a dog", n_regions=0)])
    two = build_adapter("lxmert", config=config, stream=["vision", "language"])
    assert two.streams == ("language", "vision")
    with pytest.raises(ValueError, match="model.stream='both'"):
        build_adapter("lxmert", config=config, stream="both")
