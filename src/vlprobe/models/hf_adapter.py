"""Plumbing every Hugging Face adapter shares: freezing, loading, autocast, provenance.

Subclasses only say how a batch becomes model inputs and how outputs map back to the
uniform ``[text; image]`` token order (``_encode``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
import transformers
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from vlprobe.hashing import text_sha256
from vlprobe.models.base import EncodedExample, ModelInput
from vlprobe.models.tokenization import TextBatch, load_tokenizer, tokenize_words

RANDOM_INIT = "random-init"
_VOLATILE_CONFIG_KEYS = ("transformers_version", "dtype", "torch_dtype")

AutocastArg = torch.dtype | str | None


def resolve_autocast(device: torch.device, autocast_dtype: AutocastArg) -> torch.dtype | None:
    """``"auto"``: bf16 on CUDA, none on CPU (where fp32 is usually as fast and exact)."""
    if autocast_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if isinstance(autocast_dtype, str):
        return getattr(torch, autocast_dtype)
    return autocast_dtype


def config_sha256(config: PretrainedConfig) -> str:
    """Hash of the architecture, ignoring keys that change with library version or load dtype."""
    data = {
        k: v
        for k, v in config.to_dict().items()
        if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS
    }
    return text_sha256(json.dumps(data, sort_keys=True, default=str))


def checkpoint_revision(name_or_path: str, config: PretrainedConfig) -> str:
    """The commit of a hub-cache snapshot (its folder name), else what the config recorded."""
    path = Path(name_or_path)
    if path.is_dir() and path.parent.name == "snapshots":
        return path.name
    return getattr(config, "_commit_hash", None) or "local"


def check_overrides(config_class: type[PretrainedConfig], overrides: Mapping[str, Any]) -> None:
    """Refuse names the config does not know, so a typo fails loudly instead of being stored."""
    known = config_class()
    unknown = [k for k in overrides if not hasattr(known, k)]
    if unknown:
        raise KeyError(f"{config_class.__name__} has no field(s) {unknown}")


def to_output(example: EncodedExample) -> EncodedExample:
    """CPU float32 copies made outside inference mode, so callers can train probes on them."""
    values = {}
    for f in fields(example):
        value = getattr(example, f.name)
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.is_floating_point():
                value = value.float()
            value = value.clone()
        values[f.name] = value
    return replace(example, **values)


def gather_tokens(
    hidden_states: tuple[torch.Tensor, ...],
    attentions: tuple[torch.Tensor, ...],
    b: int,
    keep: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Example ``b``'s layers at sequence positions ``keep`` (drops padding, fixes the order)."""
    hidden = torch.stack([h[b, keep] for h in hidden_states])
    attn = torch.stack([a[b][:, keep][:, :, keep] for a in attentions])
    return hidden, attn


class HFAdapter:
    """A frozen Hugging Face model behind the uniform :class:`~vlprobe.models.base.Adapter`."""

    name: str = "hf"
    model_kind: str = "single-stream"
    model_class: ClassVar[type[PreTrainedModel]]
    config_class: ClassVar[type[PretrainedConfig]]
    #: the family's usual checkpoint (``pretrained=None``), read from the local HF cache only
    default_checkpoint: ClassVar[str | None] = None
    #: named token sequences cached side by side (LXMERT's), each with ``stream_*`` metadata
    #: and returned by ``encode_streams``; empty: one sequence, the one ``encode`` returns
    streams: tuple[str, ...] = ()

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        source: str,
        revision: str,
        device: str | torch.device = "cpu",
        autocast_dtype: AutocastArg = "auto",
        max_text_length: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.source = source
        self.revision = revision
        self.seed = seed
        self.notes: dict[str, str] = {}  # extra provenance, e.g. how weights were initialised
        self.autocast_dtype = resolve_autocast(self.device, autocast_dtype)
        limit = int(getattr(model.config, "max_position_embeddings", 512))
        self.max_text_length = min(max_text_length or limit, limit)
        vocab = getattr(model.config, "vocab_size", None)
        if vocab is not None and len(tokenizer) > vocab:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens, model vocabulary {vocab}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        pretrained: str | None = None,
        random_init: bool = False,
        config: Mapping[str, Any] | None = None,
        device: str = "cpu",
        seed: int = 0,
    ) -> HFAdapter:
        """The adapter a ``configs/model/*.yaml`` describes (its ``_target_``).

        ``pretrained=None`` means :attr:`default_checkpoint`. ``random_init=True`` keeps the
        architecture (of ``pretrained`` when given, else the family default with ``config``
        overrides) and draws new weights from ``seed``: the paper's random-weights baseline.
        A ``config`` without ``pretrained`` always means random weights, since no checkpoint
        has that architecture.
        """
        config = dict(config) if config else None
        if pretrained is not None and config is not None:
            raise ValueError("config overrides apply to random weights only, not to a checkpoint")
        if config is not None or (random_init and pretrained is None):
            return cls.from_config(config, device=device, seed=seed)
        checkpoint = pretrained or cls.default_checkpoint
        if random_init:
            assert checkpoint is not None
            return cls.from_config(cls.load_config(checkpoint), device=device, seed=seed)
        return cls.from_pretrained(checkpoint, device=device)  # type: ignore[arg-type]

    @classmethod
    def load_config(cls, name_or_path: str | Path) -> PretrainedConfig:
        return cls.config_class.from_pretrained(str(name_or_path), local_files_only=True)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        device: str | torch.device = "cpu",
        *,
        autocast_dtype: AutocastArg = "auto",
        max_text_length: int | None = None,
        **hf_kwargs: Any,
    ) -> HFAdapter:
        """Load a local folder or a locally cached hub checkpoint; never downloads."""
        name = str(name_or_path)
        try:
            model = cls.model_class.from_pretrained(
                name,
                local_files_only=True,
                attn_implementation="eager",  # only eager returns attention probabilities
                dtype=torch.float32,
                **hf_kwargs,
            )
        except OSError as err:
            raise FileNotFoundError(
                f"{cls.__name__}: {name!r} is neither a local folder nor in the local HF cache "
                "(downloads are disabled)"
            ) from err
        return cls(
            model,
            load_tokenizer(name),
            source=name,
            revision=checkpoint_revision(name, model.config),
            device=device,
            autocast_dtype=autocast_dtype,
            max_text_length=max_text_length,
        )

    @classmethod
    def make_config(cls, overrides: Mapping[str, Any] | None = None) -> PretrainedConfig:
        """The model family's default config with ``overrides`` applied."""
        overrides = dict(overrides or {})
        check_overrides(cls.config_class, overrides)
        return cls.config_class(**overrides)

    @classmethod
    def build_random(cls, config: PretrainedConfig) -> PreTrainedModel:
        return cls.model_class._from_config(
            config, attn_implementation="eager", dtype=torch.float32
        )

    @classmethod
    def from_config(
        cls,
        config_or_overrides: PretrainedConfig | Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        *,
        autocast_dtype: AutocastArg = "auto",
        max_text_length: int | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> HFAdapter:
        """Random weights (the paper's random-init baseline), reproducible from ``seed``."""
        if isinstance(config_or_overrides, PretrainedConfig):
            config = config_or_overrides
        else:
            config = cls.make_config(config_or_overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls.build_random(config)
        return cls(
            model,
            tokenizer or load_tokenizer(None),
            source=type(config).__name__,
            revision=RANDOM_INIT,
            device=device,
            autocast_dtype=autocast_dtype,
            max_text_length=max_text_length,
            seed=seed,
        )

    def save_pretrained(self, folder: str | Path) -> None:
        """Model weights, config and tokenizer, loadable again with ``from_pretrained``."""
        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))

    # ------------------------------------------------------------------ Adapter protocol
    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def num_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def layer_names(self) -> list[str]:
        return ["emb"] + [f"L{i:02d}" for i in range(1, self.num_layers + 1)]

    def encode(self, batch: list[ModelInput]) -> list[EncodedExample]:
        """One :class:`EncodedExample` per input, on CPU in float32, padding removed."""
        if not batch:
            return []
        with torch.inference_mode(), self._autocast():
            encoded = self._encode(batch)
        return [to_output(e) for e in encoded]

    def provenance(self) -> dict[str, str]:
        out = {
            "adapter": self.name,
            "model_class": type(self.model).__name__,
            "name_or_path": self.source,
            "revision": self.revision,
            "config_sha256": config_sha256(self.config),
            "transformers_version": transformers.__version__,
        }
        if self.seed is not None:
            out["seed"] = str(self.seed)
        return {**out, **self.notes}

    # ------------------------------------------------------------------ for subclasses
    def _encode(self, batch: list[ModelInput]) -> list[EncodedExample]:
        raise NotImplementedError

    def _tokenize(self, batch: list[ModelInput]) -> TextBatch:
        return tokenize_words(self.tokenizer, [inp.words for inp in batch], self.max_text_length)

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.autocast_dtype is None or self.device.type != "cuda":
            yield
            return
        with torch.autocast(device_type="cuda", dtype=self.autocast_dtype):
            yield


def make_example(
    hidden: torch.Tensor,
    attentions: torch.Tensor,
    text_word_index: torch.Tensor,
    num_image_tokens: int,
    region_tokens: list[list[int]] | None = None,
) -> EncodedExample:
    """Fill in modality and word index for a ``[text; image]`` sequence."""
    n_text = int(text_word_index.shape[0])
    modality = torch.cat(
        [torch.zeros(n_text, dtype=torch.int8), torch.ones(num_image_tokens, dtype=torch.int8)]
    )
    word_index = torch.cat(
        [text_word_index.cpu(), torch.full((num_image_tokens,), -1, dtype=torch.long)]
    )
    return EncodedExample(
        hidden=hidden,
        attentions=attentions,
        modality=modality,
        word_index=word_index,
        region_tokens=region_tokens or [],
    )
