"""Word -> subword alignment, truncation and tokenizer choice."""

from __future__ import annotations

from pathlib import Path

from vlprobe.models.tokenization import load_tokenizer, tokenize_words


def test_word_index_follows_subwords_and_padding():
    tok = load_tokenizer()
    batch = tokenize_words(tok, [["unbelievably", "good"], []], max_length=16)
    assert batch.input_ids.shape == batch.attention_mask.shape
    pieces = len(tok.tokenize("unbelievably"))
    assert pieces >= 2
    assert batch.word_index[0].tolist() == [-1] + [0] * pieces + [1, -1]
    assert batch.word_index[1].tolist() == [-1, -1]  # an empty sentence is [CLS] [SEP]
    assert batch.lengths == [pieces + 3, 2]
    assert batch.attention_mask.sum(1).tolist() == batch.lengths


def test_truncation_keeps_special_tokens():
    batch = tokenize_words(load_tokenizer(), [["word"] * 20], max_length=8)
    assert batch.word_index[0].tolist() == [-1, 0, 1, 2, 3, 4, 5, -1]


def test_checkpoint_tokenizer_files_win(tmp_path: Path):
    tok = load_tokenizer()
    tok.add_tokens(["[REGION]"])
    tok.save_pretrained(tmp_path)
    assert len(load_tokenizer(tmp_path)) == len(tok)
    assert len(load_tokenizer(tmp_path / "empty")) == 30522  # no files: the default
    assert len(load_tokenizer("no-such/checkpoint")) == 30522  # not cached: the default
