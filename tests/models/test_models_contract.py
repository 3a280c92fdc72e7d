"""The uniform contract every adapter keeps (shapes, layout, alignment, invariances)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlprobe.models.base import EncodedExample
from vlprobe.testing.models import build_adapter

NAMES = ("visualbert", "lxmert", "vilt", "text", "uniter")
SENTENCE = "a young man skateboarding down the street"  # "skateboarding" -> skate ##boarding


def n_image_tokens(name: str, n_regions: int) -> int:
    if name == "text":
        return 0
    if name == "vilt":
        return 1 + 3 * 6  # image [CLS] + the 3 x 6 patch grid of the 128 x 64 image
    return n_regions


def assert_same(a: EncodedExample, b: EncodedExample, atol: float = 1e-4) -> None:
    assert torch.equal(a.modality, b.modality)
    assert torch.equal(a.word_index, b.word_index)
    assert a.region_tokens == b.region_tokens
    torch.testing.assert_close(a.hidden, b.hidden, atol=atol, rtol=0)
    torch.testing.assert_close(a.attentions, b.attentions, atol=atol, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_layout_and_rows(name, tiny_adapters, make_input):
    adapter = tiny_adapters[name]
    (ex,) = adapter.encode([make_input(SENTENCE, n_regions=3)])
    n_text = len(adapter.tokenizer.tokenize(SENTENCE)) + 2
    n_total = n_text + n_image_tokens(name, 3)

    assert len(adapter.layer_names) == adapter.num_layers + 1
    assert ex.hidden.shape == (adapter.num_layers + 1, n_total, adapter.hidden_size)
    assert ex.attentions.shape == (adapter.num_layers, adapter.num_heads, n_total, n_total)
    assert ex.hidden.dtype == ex.attentions.dtype == torch.float32
    assert ex.hidden.device.type == "cpu"
    assert not ex.hidden.is_inference() and not ex.attentions.is_inference()
    assert ex.modality.dtype == torch.int8
    assert ex.modality.tolist() == [0] * n_text + [1] * (n_total - n_text)
    assert ex.word_index[0] == -1 and ex.word_index[n_text - 1] == -1
    assert (ex.word_index[n_text:] == -1).all()
    rows = ex.attentions.sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_word_index_maps_subwords_and_phrases(name, tiny_adapters, make_input):
    adapter = tiny_adapters[name]
    (ex,) = adapter.encode([make_input(SENTENCE, n_regions=2)])
    words = SENTENCE.split()
    pieces = [adapter.tokenizer.tokenize(w) for w in words]
    assert len(pieces[3]) >= 2  # "skateboarding" really is several subwords

    positions = (ex.word_index == 3).nonzero().flatten().tolist()
    assert positions == list(range(positions[0], positions[0] + len(pieces[3])))
    # a phrase (word span [1, 4): "young man skateboarding") covers consecutive tokens
    span = ((ex.word_index >= 1) & (ex.word_index < 4)).nonzero().flatten().tolist()
    start = 1 + len(pieces[0])  # after [CLS] and "a"
    assert span == list(range(start, start + sum(len(p) for p in pieces[1:4])))
    assert ex.word_index.max() == len(words) - 1


@pytest.mark.parametrize("name", NAMES)
def test_batching_and_padding_do_not_change_results(name, tiny_adapters, make_input, big_png):
    adapter = tiny_adapters[name]
    short = make_input("two dogs", n_regions=2, seed=1)
    longer = make_input(
        SENTENCE + " while unbelievably loud music plays", n_regions=5, seed=2, image_path=big_png
    )
    (alone,) = adapter.encode([short])
    in_batch = adapter.encode([longer, short, make_input("text only", n_regions=0)])
    assert_same(alone, in_batch[1])
    (text_alone,) = adapter.encode([make_input("text only", n_regions=0)])
    assert_same(text_alone, in_batch[2])
    assert (text_alone.modality == 0).all() and text_alone.region_tokens == []


@pytest.mark.parametrize("name", NAMES)
def test_save_then_load_gives_identical_outputs(name, tiny_adapters, make_input, tmp_path: Path):
    adapter = tiny_adapters[name]
    adapter.save_pretrained(tmp_path)
    reloaded = build_adapter(name, pretrained=str(tmp_path))
    batch = [make_input(n_regions=3), make_input("just words", n_regions=0)]
    for a, b in zip(adapter.encode(batch), reloaded.encode(batch), strict=True):
        assert_same(a, b, atol=1e-6)
    assert reloaded.provenance()["revision"] == "local"
    assert adapter.provenance()["revision"] == "random-init"
    assert reloaded.provenance()["config_sha256"] == adapter.provenance()["config_sha256"]

    other = build_adapter(name, pretrained=str(tmp_path), random_init=True, seed=1)
    assert other.provenance()["config_sha256"] == adapter.provenance()["config_sha256"]
    assert other.provenance()["revision"] == "random-init"
    a, b = adapter.encode(batch[:1])[0], other.encode(batch[:1])[0]
    assert a.hidden.shape == b.hidden.shape
    assert (a.hidden[-1] - b.hidden[-1]).abs().max() > 1e-2


@pytest.mark.parametrize("name", NAMES)
def test_random_init_is_reproducible_from_seed(name, make_input):
    from vlprobe.testing.models import tiny_config

    cfg = tiny_config(name, feature_dim=16)
    a = build_adapter(name, config=cfg, seed=3).encode([make_input()])[0]
    b = build_adapter(name, config=cfg, seed=3).encode([make_input()])[0]
    assert torch.equal(a.hidden, b.hidden)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name, make_input):
    from vlprobe.testing.models import tiny_config

    cfg = tiny_config(name, feature_dim=16)
    batch = [make_input(n_regions=3), make_input("only text", n_regions=0)]
    cpu = build_adapter(name, config=cfg).encode(batch)
    fp32 = build_adapter(name, config=cfg, device="cuda")
    fp32.autocast_dtype = None
    for a, b in zip(cpu, fp32.encode(batch), strict=True):
        assert_same(a, b, atol=1e-4)
    bf16 = build_adapter(name, config=cfg, device="cuda")  # bf16 autocast by default on CUDA
    for a, b in zip(cpu, bf16.encode(batch), strict=True):
        assert b.hidden.dtype == torch.float32 and b.hidden.device.type == "cpu"
        assert_same(a, b, atol=0.1)
