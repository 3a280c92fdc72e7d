"""A text-only BERT-style encoder: the paper's text baseline for the linguistic probes.

Defaults to the offline pre-trained MiniLM (6 layers, 12 heads, hidden 384, bert-base-uncased
vocabulary). Any region or image in the input is ignored: there are no image tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from vlprobe.models.base import EncodedExample, ModelInput
from vlprobe.models.hf_adapter import AutocastArg, HFAdapter, gather_tokens, make_example
from vlprobe.models.tokenization import default_text_model_path


class TextEncoderAdapter(HFAdapter):
    name = "text"
    model_kind = "text-only"
    model_class = AutoModel  # type: ignore[assignment]
    config_class = AutoConfig  # type: ignore[assignment]

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        name_or_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        *,
        autocast_dtype: AutocastArg = "auto",
        max_text_length: int | None = None,
        **hf_kwargs: Any,
    ) -> TextEncoderAdapter:
        """``None`` loads the bundled MiniLM."""
        path = name_or_path if name_or_path is not None else default_text_model_path()
        adapter = super().from_pretrained(
            path,
            device,
            autocast_dtype=autocast_dtype,
            max_text_length=max_text_length,
            **hf_kwargs,
        )
        assert isinstance(adapter, TextEncoderAdapter)
        return adapter

    @classmethod
    def make_config(cls, overrides: Mapping[str, Any] | None = None) -> PretrainedConfig:
        """The MiniLM architecture (a BertConfig) with ``overrides`` applied."""
        config = AutoConfig.from_pretrained(str(default_text_model_path()), local_files_only=True)
        for key, value in (overrides or {}).items():
            if not hasattr(config, key):
                raise KeyError(f"{type(config).__name__} has no field {key!r}")
            setattr(config, key, value)
        return config

    @classmethod
    def build_random(cls, config: PretrainedConfig) -> PreTrainedModel:
        return AutoModel.from_config(config, attn_implementation="eager", dtype=torch.float32)

    def _encode(self, batch: list[ModelInput]) -> list[EncodedExample]:
        text = self._tokenize(batch)
        inputs = {"input_ids": text.input_ids, "attention_mask": text.attention_mask}
        if "token_type_ids" in self.tokenizer.model_input_names:  # not every encoder takes them
            inputs["token_type_ids"] = text.token_type_ids
        out = self.model(
            **{k: v.to(self.device) for k, v in inputs.items()},
            output_hidden_states=True,
            output_attentions=True,
        )
        examples = []
        for b, word_index in enumerate(text.word_index):
            keep = torch.arange(word_index.shape[0], device=self.device)
            hidden, attn = gather_tokens(out.hidden_states, out.attentions, b, keep)
            examples.append(make_example(hidden, attn, word_index, 0))
        return examples
