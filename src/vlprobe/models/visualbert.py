"""VisualBERT: the single-stream model closest to UNITER (one transformer over text + regions).

Token order is the model's own: ``[CLS] words [SEP]`` then one token per input region, so
``region_tokens[i] == [n_text + i]``. VisualBERT gives every region the same position
embedding and ignores boxes (UNITER would add a 7-d box embedding): ``region_boxes`` are
unused. A text-only input (no regions) runs with no visual tokens at all, which VisualBERT
allows; in a mixed batch its padded region slots are masked out, with the same result.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, VisualBertConfig, VisualBertModel

from vlprobe.models.base import EncodedExample, ModelInput
from vlprobe.models.hf_adapter import (
    RANDOM_INIT,
    AutocastArg,
    HFAdapter,
    gather_tokens,
    make_example,
)
from vlprobe.models.regions import check_features, num_regions, pad_rows
from vlprobe.models.tokenization import default_text_model_path, load_tokenizer


class VisualBertAdapter(HFAdapter):
    name = "visualbert"
    default_checkpoint = "uclanlp/visualbert-vqa-coco-pre"
    model_kind = "single-stream"
    model_class = VisualBertModel
    config_class = VisualBertConfig

    @classmethod
    def make_config(cls, overrides: Mapping[str, Any] | None = None) -> VisualBertConfig:
        """Default features are 2048-d bottom-up-attention regions (HF's default is 512)."""
        config = super().make_config({"visual_embedding_dim": 2048, **(overrides or {})})
        assert isinstance(config, VisualBertConfig)
        return config

    @property
    def feature_dim(self) -> int:
        return int(self.config.visual_embedding_dim)

    def _encode(self, batch: list[ModelInput]) -> list[EncodedExample]:
        text = self._tokenize(batch)
        counts = [num_regions(inp) for inp in batch]
        inputs: dict[str, Any] = {
            "input_ids": text.input_ids,
            "attention_mask": text.attention_mask,
            "token_type_ids": text.token_type_ids,
        }
        if any(counts):
            rows = [
                check_features(inp, self.feature_dim, self.name)
                if n
                else np.zeros((0, self.feature_dim), np.float32)
                for inp, n in zip(batch, counts, strict=True)
            ]
            feats, mask = pad_rows(rows, self.feature_dim)
            inputs["visual_embeds"] = feats
            inputs["visual_attention_mask"] = mask
            inputs["visual_token_type_ids"] = torch.ones_like(mask)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        out = self.model(**inputs, output_hidden_states=True, output_attentions=True)

        text_len = text.input_ids.shape[1]
        examples = []
        for b, (word_index, n_reg) in enumerate(zip(text.word_index, counts, strict=True)):
            n_text = int(word_index.shape[0])
            keep = torch.cat([torch.arange(n_text), text_len + torch.arange(n_reg)])
            hidden, attn = gather_tokens(out.hidden_states, out.attentions, b, keep.to(self.device))
            regions = [[n_text + i] for i in range(n_reg)]
            examples.append(make_example(hidden, attn, word_index, n_reg, regions))
        return examples

    @classmethod
    def build_over_text_encoder(
        cls,
        pretrained: str | None = None,
        random_init: bool = False,
        config: Mapping[str, Any] | None = None,
        device: str = "cpu",
        seed: int = 0,
    ) -> VisualBertAdapter:
        """``configs/model/visualbert_minilm.yaml``: VisualBERT over a BERT-style text encoder
        (default: the bundled MiniLM), a pre-trained single-stream model with no download.
        ``config`` may set only ``visual_embedding_dim``."""
        overrides = dict(config or {})
        visual_dim = int(overrides.pop("visual_embedding_dim", 2048))
        if overrides:
            raise KeyError(
                f"visualbert-minilm takes only visual_embedding_dim, got {sorted(overrides)}"
            )
        return cls.from_text_encoder(
            pretrained,
            visual_embedding_dim=visual_dim,
            device=device,
            seed=seed,
            random_init=random_init,
        )

    @classmethod
    def from_text_encoder(
        cls,
        bert_path: str | Path | None = None,
        visual_embedding_dim: int = 2048,
        device: str | torch.device = "cpu",
        seed: int = 0,
        *,
        random_init: bool = False,
        autocast_dtype: AutocastArg = "auto",
    ) -> VisualBertAdapter:
        """A VisualBERT whose text embeddings and encoder are a pre-trained BERT (UNITER-style).

        Needs no download with the default MiniLM. The visual projection stays random
        (seeded); visual token-type and position embeddings start as copies of the text
        ones, as VisualBERT's ``special_visual_initialize`` does.
        """
        path = Path(bert_path) if bert_path is not None else default_text_model_path()
        text_config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        config = VisualBertConfig(
            vocab_size=text_config.vocab_size,
            hidden_size=text_config.hidden_size,
            num_hidden_layers=text_config.num_hidden_layers,
            num_attention_heads=text_config.num_attention_heads,
            intermediate_size=text_config.intermediate_size,
            hidden_act=text_config.hidden_act,
            max_position_embeddings=text_config.max_position_embeddings,
            type_vocab_size=text_config.type_vocab_size,
            layer_norm_eps=text_config.layer_norm_eps,
            pad_token_id=text_config.pad_token_id,
            visual_embedding_dim=visual_embedding_dim,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls.build_random(config)
        if not random_init:
            bert = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
            copy_bert_weights(bert, model)
        adapter = cls(
            model,
            load_tokenizer(path),
            source=str(path),
            revision=RANDOM_INIT if random_init else "local",
            device=device,
            autocast_dtype=autocast_dtype,
            seed=seed,
        )
        adapter.name = "visualbert-minilm"
        if not random_init:
            adapter.notes["init"] = "text embeddings + encoder from the BERT; visual parts seeded"
        return adapter


def copy_bert_weights(bert: torch.nn.Module, model: VisualBertModel) -> None:
    """Copy every BERT tensor into the same-named VisualBERT tensor; only visual ones are left."""
    missing, unexpected = model.load_state_dict(bert.state_dict(), strict=False)
    stray = [k for k in missing if not k.startswith("embeddings.visual_")]
    if stray or unexpected:
        raise ValueError(f"BERT -> VisualBERT mismatch: missing {stray}, unexpected {unexpected}")
    emb = model.embeddings
    with torch.no_grad():
        emb.visual_token_type_embeddings.weight.copy_(emb.token_type_embeddings.weight)
        emb.visual_position_embeddings.weight.copy_(emb.position_embeddings.weight)
