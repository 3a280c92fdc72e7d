"""Adapters by name, so configs and the CLI pick a model with a string.

``pretrained=None`` means the family's usual checkpoint, read from the local HF cache only
(``text``: the bundled MiniLM). ``random_init=True`` keeps the architecture (of
``pretrained`` when given, else the family default with ``config`` overrides) and draws
new weights from ``seed``: the paper's random-weights baseline. A ``config`` without
``pretrained`` always means random weights, since no checkpoint has that architecture.
"""

from __future__ import annotations

from typing import Any

from vlprobe.models.hf_adapter import HFAdapter
from vlprobe.models.lxmert import LxmertAdapter
from vlprobe.models.text_encoder import TextEncoderAdapter
from vlprobe.models.uniter import UniterAdapter, build_uniter
from vlprobe.models.vilt import ViltAdapter
from vlprobe.models.visualbert import VisualBertAdapter

ADAPTERS: dict[str, type[HFAdapter]] = {
    "visualbert": VisualBertAdapter,
    "lxmert": LxmertAdapter,
    "vilt": ViltAdapter,
    "text": TextEncoderAdapter,
    "uniter": UniterAdapter,
}
DEMO = "visualbert-minilm"
UNITER_MINI = "uniter-mini"  # pre-trained on the demo on first use (vlprobe.pretrain)
DEFAULT_CHECKPOINTS: dict[str, str | None] = {
    "visualbert": "uclanlp/visualbert-vqa-coco-pre",
    "lxmert": "unc-nlp/lxmert-base-uncased",
    "vilt": "dandelin/vilt-b32-mlm",
    "text": None,  # the bundled MiniLM
    "uniter": None,  # no hub checkpoint: model.checkpoint=PATH.pt (UniterAdapter.from_checkpoint)
}


def available_adapters() -> list[str]:
    return [*ADAPTERS, DEMO, UNITER_MINI]


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
    if name == DEMO:
        return {"visual_embedding_dim": feature_dim}
    raise KeyError(f"unknown adapter {name!r}; known: {available_adapters()}")


def build_adapter(
    name: str,
    pretrained: str | None = None,
    random_init: bool = False,
    config: dict | None = None,
    device: str = "cpu",
    seed: int = 0,
    **model_args: Any,
) -> HFAdapter:
    """Build a frozen adapter; see the module docstring for what each argument combination means.

    ``model_args``: LXMERT's ``stream``; UNITER's ``checkpoint`` (a released ``.pt``) and
    ``tokenizer`` (a folder);
    uniter-mini's ``pretrain`` settings, ``out_dir`` and ``progress``.
    """
    if name == DEMO:
        return _build_demo(pretrained, random_init, config, device, seed)
    if name == UNITER_MINI:
        from vlprobe.pretrain.uniter_mini import build_uniter_mini  # imports Lightning

        return build_uniter_mini(random_init=random_init, device=device, seed=seed, **model_args)
    if name == "lxmert" and "stream" in model_args:
        stream = model_args.pop("stream")
        adapter = build_adapter(name, pretrained, random_init, config, device, seed, **model_args)
        assert isinstance(adapter, LxmertAdapter)
        adapter.set_stream(stream)
        return adapter
    if model_args and name != "uniter":
        raise KeyError(f"{name} takes no {sorted(model_args)}")
    if name == "uniter" and pretrained is None:
        return build_uniter(
            config=config, random_init=random_init, device=device, seed=seed, **model_args
        )
    if name not in ADAPTERS:
        raise KeyError(f"unknown adapter {name!r}; known: {available_adapters()}")
    cls = ADAPTERS[name]
    if pretrained is not None and config is not None:
        raise ValueError("config overrides apply to random weights only, not to a checkpoint")
    if config is not None or (random_init and pretrained is None):
        return cls.from_config(config, device=device, seed=seed)
    checkpoint = pretrained or DEFAULT_CHECKPOINTS[name]
    if random_init:
        assert checkpoint is not None
        return cls.from_config(cls.load_config(checkpoint), device=device, seed=seed)
    if checkpoint is None:
        return TextEncoderAdapter.from_pretrained(None, device=device)
    return cls.from_pretrained(checkpoint, device=device)


def _build_demo(
    pretrained: str | None, random_init: bool, config: dict | None, device: str, seed: int
) -> VisualBertAdapter:
    """VisualBERT over the bundled MiniLM: a pre-trained single-stream model with no download."""
    overrides = dict(config or {})
    visual_dim = int(overrides.pop("visual_embedding_dim", 2048))
    if overrides:
        raise KeyError(f"{DEMO} takes only visual_embedding_dim, got {sorted(overrides)}")
    return VisualBertAdapter.from_text_encoder(
        pretrained,
        visual_embedding_dim=visual_dim,
        device=device,
        seed=seed,
        random_init=random_init,
    )
