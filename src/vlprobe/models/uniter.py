"""UNITER (Chen et al., ECCV 2020): one BERT over ``[text; regions]``, and its released checkpoints.

Not in ``transformers``, so the model is written here from BERT's own modules
(``BertEmbeddings``, ``BertLayer``, ``BertPooler``): parameter names match the released
``uniter-base.pt`` / ``uniter-large.pt`` state dicts, and the text side is exactly BERT.
Contract: /work/shared/reference/UNITER.md (docs/models.md).

* Text: ``[CLS] tokens [SEP]``, position ids ``0..n-1``, token type 0.
* One token per region: ``LN(LN_img(W_img f) + LN_pos(W_pos box7) + type_emb[1])`` with
  ``box7 = [x1/W, y1/H, x2/W, y2/H, w/W, h/H, (w/W)(h/H)]``; no position embedding.
* The sequence is text then regions, with no padding in between; additive mask
  ``(1 - mask) * -10000``. Every layer's hidden states and every head's attention are returned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertPreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import ModelOutput
from transformers.models.bert.modeling_bert import BertEmbeddings, BertEncoder, BertPooler

from vlprobe.models.base import EncodedExample, ModelInput
from vlprobe.models.hf_adapter import RANDOM_INIT, AutocastArg, HFAdapter, make_example
from vlprobe.models.regions import check_features, normalised_boxes, num_regions, pad_rows
from vlprobe.models.tokenization import load_tokenizer

PREFIX = "uniter."
ENCODER_MODULES = ("embeddings", "img_embeddings", "encoder", "pooler")
HEAD_DIM = 64  # UNITER-base (768 / 12) and -large (1024 / 16) both use 64-d heads
SIZES = {(12, 768): "UNITER-base", (24, 1024): "UNITER-large"}


class UniterConfig(BertConfig):
    """BERT's config plus the region feature size (2048: bottom-up-attention features)."""

    model_type = "uniter"

    def __init__(self, img_dim: int = 2048, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.img_dim = img_dim


class UniterImageEmbeddings(nn.Module):
    """Region feature + 7-d box -> one token; three separate LayerNorms as in the release."""

    def __init__(self, config: UniterConfig) -> None:
        super().__init__()
        hidden, eps = config.hidden_size, config.layer_norm_eps
        self.img_linear = nn.Linear(config.img_dim, hidden)
        self.img_layer_norm = nn.LayerNorm(hidden, eps=eps)
        self.pos_linear = nn.Linear(7, hidden)
        self.pos_layer_norm = nn.LayerNorm(hidden, eps=eps)
        # row 1 is added to masked regions' features in pre-training (MRFR); row 0 stays zero
        self.mask_embedding = nn.Embedding(2, config.img_dim, padding_idx=0)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        feats: torch.Tensor,
        boxes7: torch.Tensor,
        type_embeddings: torch.Tensor,
        masked: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if masked is not None:
            feats = feats + self.mask_embedding(masked.long())
        image = self.img_layer_norm(self.img_linear(feats))
        position = self.pos_layer_norm(self.pos_linear(boxes7))
        return self.dropout(self.LayerNorm(image + position + type_embeddings))


@dataclass
class UniterOutput(ModelOutput):
    """``hidden_states[l]``: layer ``l`` (0 = embeddings); sequence = text then regions."""

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    attention_mask: torch.Tensor | None = None  # (B, T) of the joint sequence


class UniterModel(BertPreTrainedModel):
    """The UNITER encoder; eager attention only, since probing needs the probabilities."""

    config_class = UniterConfig
    base_model_prefix = "uniter"
    _supports_sdpa = False
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False

    def __init__(self, config: UniterConfig) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.img_embeddings = UniterImageEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The text tokens' layer-0 input (token type 0)."""
        return self.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))

    def embed_regions(
        self, feats: torch.Tensor, boxes7: torch.Tensor, masked: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The regions' layer-0 input (token type 1, as in the release)."""
        image_type = torch.ones(feats.shape[:2], dtype=torch.long, device=feats.device)
        type_emb = self.embeddings.token_type_embeddings(image_type)
        return self.img_embeddings(feats, boxes7, type_emb, masked)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        img_feat: torch.Tensor | None = None,
        img_pos_feat: torch.Tensor | None = None,
        img_mask: torch.Tensor | None = None,
        img_masked: torch.Tensor | None = None,
    ) -> UniterOutput:
        """Right-padded text ``(B, Lt)`` and regions ``(B, N, ·)`` with 0/1 masks."""
        text = self.embed_text(input_ids)
        if img_feat is None or img_feat.shape[1] == 0:
            sequence, mask = text, attention_mask
        else:
            assert img_pos_feat is not None and img_mask is not None
            image = self.embed_regions(img_feat, img_pos_feat, img_masked)
            sequence, mask = join_without_padding(text, attention_mask, image, img_mask)
        additive = (1.0 - mask[:, None, None, :].to(sequence.dtype)) * -10000.0
        hidden, attentions = [sequence], []
        for layer in self.encoder.layer:
            attended, probs = layer.attention(sequence, additive)
            sequence = layer.feed_forward_chunk(attended)
            hidden.append(sequence)
            attentions.append(probs)
        return UniterOutput(
            last_hidden_state=sequence,
            pooler_output=self.pooler(sequence),
            hidden_states=tuple(hidden),
            attentions=tuple(attentions),
            attention_mask=mask,
        )


def join_without_padding(
    text: torch.Tensor, text_mask: torch.Tensor, image: torch.Tensor, image_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example ``[text[:n_t]; image[:n_r]]`` right-padded, as UNITER's gather index does."""
    n_text, n_image = text_mask.sum(1), image_mask.sum(1)
    total = n_text + n_image
    width = int(total.max())
    pos = torch.arange(width, device=text.device)[None]
    from_image = text.shape[1] + pos - n_text[:, None]
    index = torch.where(pos < n_text[:, None], pos, from_image)
    index = index.clamp(max=text.shape[1] + image.shape[1] - 1)
    joined = torch.cat([text, image], 1)
    out = joined.gather(1, index[..., None].expand(-1, -1, joined.shape[-1]))
    return out, (pos < total[:, None]).long()


def box7(inp: ModelInput) -> np.ndarray:
    """UNITER's region position: normalised corners, width, height and area."""
    corners = normalised_boxes(inp)
    wh = corners[:, 2:] - corners[:, :2]
    return np.concatenate([corners, wh, wh[:, :1] * wh[:, 1:]], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------- checkpoints
class CheckpointError(ValueError):
    """A released-layout checkpoint that does not match the UNITER encoder."""


def encoder_state_dict(raw: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The encoder's tensors in float32 under the module's names; heads and others dropped.

    Keys under ``uniter.`` are the encoder when that prefix exists, else the keys whose first
    name is an encoder module. ``gamma``/``beta`` (old BERT names) become ``weight``/``bias``.
    """
    if not raw:
        raise CheckpointError(f"{source}: the checkpoint holds no tensors")
    prefixed = any(k.startswith(PREFIX) for k in raw)
    out = {}
    for key, value in raw.items():
        if prefixed:
            if not key.startswith(PREFIX):
                continue
            key = key[len(PREFIX) :]
        elif key.split(".", 1)[0] not in ENCODER_MODULES:
            continue
        key = re.sub(r"(LayerNorm|layer_norm)\.gamma$", r"\1.weight", key)
        key = re.sub(r"(LayerNorm|layer_norm)\.beta$", r"\1.bias", key)
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
        out[key] = value.float()
    return out


def infer_config(state: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    """Architecture from tensor shapes (heads: 64-d, as in UNITER-base and -large; ``None``
    when the hidden size is not a multiple of 64)."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key} (is this a UNITER checkpoint?)")
        return tuple(state[key].shape)

    vocab, hidden = shape("embeddings.word_embeddings.weight")
    layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_attention_heads": hidden // HEAD_DIM if hidden % HEAD_DIM == 0 else None,
        "num_hidden_layers": max(layers) + 1 if layers else 0,
        "intermediate_size": shape("encoder.layer.0.intermediate.dense.weight")[0],
        "max_position_embeddings": shape("embeddings.position_embeddings.weight")[0],
        "type_vocab_size": shape("embeddings.token_type_embeddings.weight")[0],
        "img_dim": shape("img_embeddings.img_linear.weight")[1],
    }


def read_config_json(path: str | Path) -> dict[str, Any]:
    """The BERT-style JSON shipped with the checkpoints; unknown keys are refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.config={path}: no such file (a UNITER JSON config)")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"model.config={path}: not valid JSON ({err})") from err
    known = UniterConfig()
    unknown = sorted(k for k in values if not hasattr(known, k))
    if unknown:
        raise CheckpointError(f"model.config={path}: unknown key(s) {unknown}")
    return values


def load_checkpoint(
    checkpoint: str | Path, config: str | Path | None = None
) -> tuple[UniterModel, str]:
    """A released ``.pt`` into :class:`UniterModel`; strict for the encoder and embeddings.

    Returns the model and a note saying where the architecture came from. Every mismatch is a
    :class:`CheckpointError` naming the first offending key, raised before anything is built.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"model.checkpoint={path}: no such file (a UNITER .pt state dict)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"model.checkpoint={path}: not a PyTorch state dict ({err})") from err
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"model.checkpoint={path}: holds a {type(raw).__name__}, not a dict")
    state = encoder_state_dict(raw, str(path))
    inferred = infer_config(state, str(path))
    if config is None:
        # the head count is in no tensor's shape: known only for the released sizes (a 4-head
        # checkpoint of hidden 256 would run as 4 heads of 64, not as the 4 it was trained with)
        layers, hidden = inferred["num_hidden_layers"], inferred["hidden_size"]
        size = SIZES.get((layers, hidden))
        if size is None:
            raise CheckpointError(
                f"{path}: {layers} layers of hidden size {hidden} are neither UNITER-base (12 x "
                "768) nor UNITER-large (24 x 1024), so the number of attention heads cannot "
                "follow from the shapes; pass model.config=PATH.json (its BERT-style config)"
            )
        values, origin = inferred, f"inferred from shapes ({size})"
    else:
        values = {"img_dim": inferred["img_dim"], **read_config_json(config)}
        origin = f"config {config}"
    model = build_random(UniterConfig(**values))
    expected = model.state_dict()
    for key in expected:
        if key not in state:
            raise CheckpointError(f"{path}: missing key {PREFIX}{key}")
    for key, value in state.items():
        if key not in expected:
            raise CheckpointError(f"{path}: unexpected key {PREFIX}{key}")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: {PREFIX}{key} has shape {tuple(value.shape)}, the config "
                f"({origin}) expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=True)
    return model, origin


def build_random(config: UniterConfig) -> UniterModel:
    return UniterModel._from_config(config, attn_implementation="eager", dtype=torch.float32)


# ---------------------------------------------------------------------------- adapter
class UniterAdapter(HFAdapter):
    name = "uniter"
    model_kind = "single-stream"
    model_class = UniterModel
    config_class = UniterConfig

    @property
    def feature_dim(self) -> int:
        return int(self.config.img_dim)

    @classmethod
    def build_random(cls, config: UniterConfig) -> UniterModel:  # type: ignore[override]
        return build_random(config)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        config: str | Path | None = None,
        tokenizer: str | Path | None = None,
        device: str | torch.device = "cpu",
        *,
        random_init: bool = False,
        seed: int = 0,
        autocast_dtype: AutocastArg = "auto",
    ) -> UniterAdapter:
        """A released ``.pt`` (``random_init``: its architecture with seeded random weights)."""
        model, origin = load_checkpoint(checkpoint, config)
        if random_init:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = build_random(model.config)
        tok = uniter_tokenizer(tokenizer, int(model.config.vocab_size))
        adapter = cls(
            model,
            tok,
            source=str(checkpoint),
            revision=RANDOM_INIT if random_init else "local",
            device=device,
            autocast_dtype=autocast_dtype,
            seed=seed if random_init else None,
        )
        adapter.notes["architecture"] = origin
        return adapter

    def _encode(self, batch: list[ModelInput]) -> list[EncodedExample]:
        text = self._tokenize(batch)
        counts = [num_regions(inp) for inp in batch]
        inputs = {"input_ids": text.input_ids, "attention_mask": text.attention_mask}
        if any(counts):
            feats, boxes = [], []
            for inp, n in zip(batch, counts, strict=True):
                feats.append(
                    check_features(inp, self.feature_dim, self.name)
                    if n
                    else np.zeros((0, self.feature_dim), np.float32)
                )
                boxes.append(box7(inp) if n else np.zeros((0, 7), np.float32))
            inputs["img_feat"], inputs["img_mask"] = pad_rows(feats, self.feature_dim)
            inputs["img_pos_feat"], _ = pad_rows(boxes, 7)
        out = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        examples = []
        for b, (word_index, n_reg) in enumerate(zip(text.word_index, counts, strict=True)):
            n = int(word_index.shape[0]) + n_reg
            hidden = torch.stack([h[b, :n] for h in out.hidden_states])
            attn = torch.stack([a[b, :, :n, :n] for a in out.attentions])
            regions = [[int(word_index.shape[0]) + i] for i in range(n_reg)]
            examples.append(make_example(hidden, attn, word_index, n_reg, regions))
        return examples


def uniter_tokenizer(path: str | Path | None, vocab_size: int) -> PreTrainedTokenizerBase:
    """``model.tokenizer`` (UNITER: bert-base-cased, 28,996 pieces); ``None``: the bundled one."""
    if path is not None and not Path(path).is_dir():
        raise FileNotFoundError(f"model.tokenizer={path}: not a folder with a tokenizer")
    tokenizer = load_tokenizer(path)
    if len(tokenizer) != vocab_size:
        raise CheckpointError(
            f"model.tokenizer={path}: {len(tokenizer)} tokens, the checkpoint's vocabulary has "
            f"{vocab_size} (UNITER: point model.tokenizer at a bert-base-cased folder)"
        )
    return tokenizer


def build_uniter(
    checkpoint: str | Path | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    tokenizer: str | Path | None = None,
    random_init: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    pretrained: str | Path | None = None,
) -> UniterAdapter:
    """``model=uniter`` (its ``_target_``): a released ``checkpoint`` (+ optional JSON
    ``config``), a mapping ``config`` = random weights, or ``pretrained``: a folder written by
    ``save_pretrained``."""
    if pretrained is not None:
        adapter = UniterAdapter.build(pretrained, random_init, None, str(device), seed)
        assert isinstance(adapter, UniterAdapter)
        return adapter
    if checkpoint is not None:
        if isinstance(config, Mapping):
            raise ValueError("model.config with a checkpoint is a path to its JSON config")
        return UniterAdapter.from_checkpoint(
            checkpoint, config, tokenizer, device, random_init=random_init, seed=seed
        )
    if config is None and not random_init:
        raise ValueError("model=uniter needs model.checkpoint=PATH.pt (or model.random_init=true)")
    if isinstance(config, str | Path):
        config = read_config_json(config)
    architecture = UniterAdapter.make_config(config)
    tok = uniter_tokenizer(tokenizer, architecture.vocab_size)
    return UniterAdapter.from_config(architecture, device=device, seed=seed, tokenizer=tok)
