"""Tiny adapters for fast tests, built through the same ``_target_`` as ``configs/model/``."""

from __future__ import annotations

from typing import Any

from hydra.utils import get_method
from omegaconf import OmegaConf

from vlprobe.config import config_dir
from vlprobe.models.hf_adapter import HFAdapter


def model_target(name: str) -> str:
    """The ``_target_`` of ``configs/model/<name>.yaml`` (``visualbert-minilm`` -> ``_minilm``)."""
    path = config_dir() / "model" / f"{name.replace('-', '_')}.yaml"
    if not path.exists():
        raise KeyError(f"unknown model {name!r}: no {path}")
    return str(OmegaConf.load(path)["_target_"])


def build_adapter(name: str, **kwargs: Any) -> HFAdapter:
    """The adapter of model config ``name`` with ``kwargs`` (pretrained, config, seed ...)."""
    return get_method(model_target(name))(**kwargs)


def tiny_config(name: str, feature_dim: int = 2048) -> dict[str, Any]:
    """A 2-layer, hidden-32, 4-head architecture for fast tests (random weights only)."""
    small = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    if name == "visualbert":
        return {**small, "num_hidden_layers": 2, "visual_embedding_dim": feature_dim}
    if name == "lxmert":
        layers = {"l_layers": 1, "r_layers": 1, "x_layers": 2}
        return {**small, **layers, "visual_feat_dim": feature_dim}
    if name == "vilt":
        return {**small, "num_hidden_layers": 2, "image_size": 64, "patch_size": 16}
    if name == "text":
        return {**small, "num_hidden_layers": 2}
    if name == "uniter":
        return {**small, "num_hidden_layers": 2, "img_dim": feature_dim}
    if name == "visualbert-minilm":
        return {"visual_embedding_dim": feature_dim}
    raise KeyError(f"no tiny config for {name!r}")
