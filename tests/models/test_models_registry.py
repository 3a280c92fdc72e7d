"""Building adapters from the model configs' ``_target_``, and refusing ambiguous requests."""

from __future__ import annotations

import pytest

from vlprobe.config import config_dir
from vlprobe.testing.models import build_adapter, model_target, tiny_config


def test_names_kinds_and_feature_dims(tiny_adapters):
    targets = {p.stem: model_target(p.stem) for p in (config_dir() / "model").glob("*.yaml")}
    assert set(targets.values()) == {
        "vlprobe.models.visualbert.VisualBertAdapter.build",
        "vlprobe.models.visualbert.VisualBertAdapter.build_over_text_encoder",
        "vlprobe.models.lxmert.LxmertAdapter.build",
        "vlprobe.models.vilt.ViltAdapter.build",
        "vlprobe.models.text_encoder.TextEncoderAdapter.build",
        "vlprobe.models.uniter.build_uniter",
        "vlprobe.pretrain.uniter_mini.build_uniter_mini",
    }
    kinds = {name: a.model_kind for name, a in tiny_adapters.items()}
    assert kinds == {
        "visualbert": "single-stream",
        "lxmert": "two-stream",
        "vilt": "single-stream",
        "text": "text-only",
        "uniter": "single-stream",
    }
    assert tiny_adapters["visualbert"].feature_dim == 16
    assert tiny_adapters["lxmert"].feature_dim == 16
    assert tiny_adapters["uniter"].feature_dim == 16
    for adapter in tiny_adapters.values():
        assert adapter.num_heads == 4 and adapter.hidden_size == 32
        prov = adapter.provenance()
        assert set(prov) >= {"adapter", "name_or_path", "revision", "config_sha256"}


def test_text_baseline_defaults_to_real_minilm():
    adapter = build_adapter("text")
    assert (adapter.num_layers, adapter.num_heads, adapter.hidden_size) == (6, 12, 384)
    assert adapter.provenance()["revision"] == "local"
    random = build_adapter("text", random_init=True, seed=1)
    assert random.num_layers == 6 and random.provenance()["revision"] == "random-init"
    assert random.provenance()["config_sha256"] == adapter.provenance()["config_sha256"]


def test_errors_are_explicit():
    with pytest.raises(KeyError):
        build_adapter("nope")
    with pytest.raises(KeyError):
        tiny_config("nope")
    with pytest.raises(KeyError, match="no field"):
        build_adapter("visualbert", config={"hiden_size": 8})
    with pytest.raises(ValueError, match="random weights only"):
        build_adapter("text", pretrained="x", config={"hidden_size": 8})
    with pytest.raises(FileNotFoundError, match="local HF cache"):
        build_adapter("lxmert", pretrained="no-such/checkpoint")
