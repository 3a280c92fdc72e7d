"""The hook erases what it should, where it should, and nothing else."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from vlprobe.intervention import hooks
from vlprobe.intervention.erasers import Eraser, random_subspace
from vlprobe.intervention.hooks import erasing, site_for
from vlprobe.models.base import ModelInput
from vlprobe.testing.models import build_adapter, tiny_config

D = 64


class PlantedModel(nn.Module):
    """Residual layers; the output reads one planted direction of the masked tokens' states
    after the last layer, so only that direction at any layer matters to it."""

    def __init__(self, direction: torch.Tensor, num_layers: int = 3) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=num_layers, hidden_size=D)
        self.embed = nn.Identity()
        self.layers = nn.ModuleList(nn.Identity() for _ in range(num_layers))
        self.direction = direction

    def forward(self, *, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h + 0.1 * torch.tanh(h @ torch.eye(D)))  # keeps the direction's share
        return (h[mask] @ self.direction).sum()


def planted_site(model: nn.Module, layer: int, _tokens: str):
    module = model.embed if layer == 0 else model.layers[layer - 1]
    return module, lambda kw: kw["mask"]


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(hooks.SITES, PlantedModel, planted_site)
    gen = torch.Generator().manual_seed(0)
    direction = torch.linalg.qr(torch.randn(D, 2, generator=gen))[0]
    model = PlantedModel(direction[:, 0])
    x = torch.randn(4, 6, D, generator=gen) + 3.0 * direction[:, 0]  # the signal is planted
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, 3:] = True
    return model, x, mask, direction.numpy()


def _line(vector: np.ndarray) -> Eraser:
    """Project ``vector``'s direction out (through the origin)."""
    v = vector[:, None] / np.linalg.norm(vector)
    return Eraser("test", v, v, np.zeros(D, np.float32))


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_erasing_the_planted_direction_changes_the_output(planted, layer: int) -> None:
    model, x, mask, direction = planted
    plain = model(x=x, mask=mask)
    with erasing(model, _line(direction[:, 0]), layer):
        erased = model(x=x, mask=mask)
    with erasing(model, _line(direction[:, 1]), layer):  # orthogonal to the planted one
        orthogonal = model(x=x, mask=mask)
    changes = []
    for draw in range(5):  # random subspaces of the same rank (1)
        with erasing(model, random_subspace(D, 1, np.zeros(D), seed=draw), layer):
            changes.append(abs(float(model(x=x, mask=mask) - plain)))
    big = abs(float(erased - plain))
    assert big > 0.5 * abs(float(plain))  # the planted signal is gone
    assert abs(float(orthogonal - plain)) < 1e-3 * big
    assert max(changes) < 0.1 * big
    after = model(x=x, mask=mask)  # the hooks are gone after the block
    assert torch.equal(after, plain)


def _batch() -> list[ModelInput]:
    rng = np.random.default_rng(0)

    def example(words: str, regions: int) -> ModelInput:
        boxes = np.tile(np.array([0, 0, 10, 10], np.float32), (regions, 1))
        feats = rng.standard_normal((regions, 16)).astype(np.float32)
        return ModelInput(words.split(), feats, boxes, image_size=(20, 20))

    return [example("a man rides a brown horse", 3), example("dog", 2), example("a cat", 4)]


@pytest.mark.parametrize("name", ["visualbert", "uniter"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_erasure_touches_only_region_tokens_at_and_above_its_layer(name: str, layer: int) -> None:
    adapter = build_adapter(name, config=tiny_config(name, 16), device="cpu", seed=0)
    batch = _batch()
    plain = adapter.encode(batch)
    eraser = random_subspace(32, 3, np.full(32, 0.1), seed=1)
    with erasing(adapter.model, eraser, layer):
        erased = adapter.encode(batch)
    for p, e in zip(plain, erased, strict=True):
        image = p.modality == 1
        torch.testing.assert_close(e.hidden[:layer], p.hidden[:layer], rtol=0, atol=0)
        torch.testing.assert_close(e.hidden[layer, ~image], p.hidden[layer, ~image], rtol=0, atol=0)
        # the region tokens hold exactly the erased plain states
        expected = eraser.apply(p.hidden[layer, image])
        torch.testing.assert_close(e.hidden[layer, image], expected, rtol=0, atol=1e-5)
        if layer < 2:  # the layers above compute on them
            assert (e.hidden[layer + 1 :] - p.hidden[layer + 1 :]).abs().max() > 1e-3


#: example of _batch() -> the words whose tokens are erased (a phrase's, none, one word)
CHOSEN = {0: [1, 4, 5], 1: [], 2: [1]}


def _text_only() -> list[ModelInput]:
    return [ModelInput(w.split()) for w in ("she walked home", "the dogs were barking loudly")]


def erase_words(
    adapter: Any, batch: list[ModelInput], chosen: dict[int, list[int]], layer: int, encode: Any
) -> tuple[Any, Any, Eraser]:
    """``encode(batch)`` plain, and with the ``chosen`` words of each example (by position in
    the batch) erased at ``layer`` by a random rank-3 eraser; that eraser."""
    plain = encode(batch)
    eraser = random_subspace(32, 3, np.full(32, 0.1), seed=1)

    def words(inp: ModelInput) -> list[int]:
        return chosen[next(i for i, b in enumerate(batch) if b is inp)]

    with hooks.selecting_words(adapter, words), erasing(adapter.model, eraser, layer, "words"):
        erased = encode(batch)
    return plain, erased, eraser


@pytest.mark.parametrize("name", ["visualbert", "uniter"])
@pytest.mark.parametrize("layer", [0, 1, 2])
@pytest.mark.parametrize("text_only", [False, True])
def test_word_erasure_touches_only_those_words_tokens(name: str, layer: int, text_only: bool):
    adapter = build_adapter(name, config=tiny_config(name, 16), device="cpu", seed=0)
    batch = _text_only() if text_only else _batch()
    chosen = {0: [0, 2], 1: [1]} if text_only else CHOSEN
    plain, erased, eraser = erase_words(adapter, batch, chosen, layer, adapter.encode)
    for b, (p, e) in enumerate(zip(plain, erased, strict=True)):
        picked = torch.isin(p.word_index, torch.tensor(chosen[b], dtype=torch.long))
        assert int(picked.sum()) >= len(chosen[b])  # every chosen word has a token
        torch.testing.assert_close(e.hidden[:layer], p.hidden[:layer], rtol=0, atol=0)
        kept = e.hidden[layer, ~picked], p.hidden[layer, ~picked]
        torch.testing.assert_close(*kept, rtol=0, atol=0)  # specials, other words, regions
        expected = eraser.apply(p.hidden[layer, picked])
        torch.testing.assert_close(e.hidden[layer, picked], expected, rtol=0, atol=1e-5)
        if layer < 2 and chosen[b]:  # the layers above compute on them
            assert (e.hidden[layer + 1 :] - p.hidden[layer + 1 :]).abs().max() > 1e-3
    assert torch.equal(adapter.encode(batch)[0].hidden, plain[0].hidden)  # hooks gone
    assert "_tokenize" not in vars(adapter)  # the adapter's own tokenizer again


def test_word_tokens_outside_selecting_words_are_refused() -> None:
    adapter = build_adapter("visualbert", config=tiny_config("visualbert", 16), seed=0)
    words = erasing(adapter.model, Eraser.identity(32), 1, "words")
    with words, pytest.raises(RuntimeError, match="only inside selecting_words"):
        adapter.encode(_batch())


def test_identity_eraser_changes_nothing() -> None:
    adapter = build_adapter("visualbert", config=tiny_config("visualbert", 16), seed=0)
    plain = adapter.encode(_batch())
    with erasing(adapter.model, Eraser.identity(32), 1):
        same = adapter.encode(_batch())
    for p, s in zip(plain, same, strict=True):
        assert torch.equal(p.hidden, s.hidden) and torch.equal(p.attentions, s.attentions)


def test_a_layer_outside_the_model_is_refused() -> None:
    adapter = build_adapter("visualbert", config=tiny_config("visualbert", 16), seed=0)
    with pytest.raises(ValueError, match="intervention.layer=3: the model has hidden layers 0-2"):
        site_for(adapter.model, 3)
