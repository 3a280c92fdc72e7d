"""uniter-mini's pre-training is shown (every step, both stages) and evaluated on held-out
captions with its own ITM and MLM heads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_lightning.loggers import CSVLogger
from test_pretrain import DIM, tiny_demo
from test_pretrain import _settings as demo_settings

from vlprobe.models.tokenization import load_tokenizer
from vlprobe.pretrain.data import held_out_pairs, training_pairs
from vlprobe.pretrain.evaluate import evaluate
from vlprobe.pretrain.uniter_mini import RECORD, STEP_LOG, PretrainSettings, pretrain


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_demo(tmp_path_factory.mktemp("pretrain-log-demo"))


def _settings(demo: Path, **kw) -> PretrainSettings:
    joint = {"contrastive_steps": 4, "contrastive": 1.0, "wra": 0.1}
    return PretrainSettings(**demo_settings(demo, **{**joint, **kw}))


def _held_out(demo: Path) -> list:
    return held_out_pairs(
        demo / "flickr30k", demo / "features" / "butd.tsv", load_tokenizer(None), DIM
    )


def test_held_out_pairs_are_validation_images_never_pre_trained_on(demo: Path) -> None:
    tokenizer = load_tokenizer(None)
    held_out = _held_out(demo)
    train = training_pairs(
        demo / "flickr30k", demo / "visual_genome", demo / "features" / "butd.tsv",
        [0.8, 0.1, 0.1], tokenizer, DIM,
    )  # fmt: skip
    val_ids = set((demo / "flickr30k" / "val.txt").read_text().split())
    assert held_out and {p.image_id for p in held_out} <= val_ids
    assert not {p.image_id for p in held_out} & {p.image_id for p in train}
    with pytest.raises(ValueError, match="val or test"):
        held_out_pairs(demo / "flickr30k", demo / "features" / "butd.tsv", tokenizer, DIM, "train")


def test_every_step_of_both_stages_is_logged_and_held_out_captions_evaluated(
    demo: Path, tmp_path: Path
) -> None:
    logger = CSVLogger(tmp_path / "run", name="csv")
    folder = tmp_path / "model"
    record = pretrain(_settings(demo), folder, progress=False, logger=logger)
    with open(folder / STEP_LOG) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["stage"] for r in rows] == ["contrastive"] * 4 + ["joint"] * 3
    assert [int(r["step"]) for r in rows] == list(range(7))  # one curve across both stages
    for row in rows[:4]:
        assert float(row["contrastive"]) > 0 and row["itm"] == ""
    objectives = ("mlm", "itm", "mrfr", "wra", "contrastive")
    for row in rows[4:]:
        assert 0 <= float(row["itm_acc"]) <= 1 and float(row["itm"]) > 0
        terms = sum(float(row[k]) for k in objectives if row.get(k))
        assert float(row["loss"]) == pytest.approx(terms, rel=1e-5)  # the loss is their sum
    final = record["final"]  # Lightning's own last values: the CSV's last row, not one before
    assert float(rows[-1]["itm"]) == pytest.approx(final["train/itm"], abs=1e-4)
    assert float(rows[-1]["itm_acc"]) == pytest.approx(final["train/itm_acc"], abs=1e-4)
    assert json.loads((folder / RECORD).read_text())["heldout"] == record["heldout"]

    held = record["heldout"]
    n = len(_held_out(demo))
    assert held["captions"] == min(300, n) and held["split"] == "val"
    assert held["itm_acc"] == pytest.approx(
        (held["itm_acc_matched"] + held["itm_acc_mismatched"]) / 2, abs=1e-3
    )
    for key in ("itm_acc", "itm_ranking", "mlm_true_image", "mlm_other_image"):
        assert 0 <= held[key] <= 1
    assert held["mlm_tokens"] >= held["captions"]  # one whole phrase per caption

    with open(Path(logger.log_dir) / "metrics.csv") as handle:
        logged = list(csv.DictReader(handle))
    itm = [r for r in logged if r.get("pretrain/joint/itm")]
    assert [int(r["step"]) for r in itm] == [4, 5, 6]
    assert float(itm[-1]["pretrain/joint/itm"]) == pytest.approx(float(rows[-1]["itm"]))
    assert any(r.get("pretrain/heldout/itm_acc") for r in logged)


def _module(demo: Path):
    from vlprobe.models.uniter import build_random
    from vlprobe.pretrain.module import UniterPretraining
    from vlprobe.pretrain.uniter_mini import init_from_minilm, mini_config

    torch.manual_seed(0)
    model = build_random(mini_config(1, DIM))
    init_from_minilm(model)
    return UniterPretraining(model)


def test_an_itm_head_that_always_says_mismatched_scores_one_half(demo: Path) -> None:
    module = _module(demo)
    with torch.no_grad():  # planted: the reviewer's finding, every pair called mismatched
        module.itm_output.weight.zero_()
        module.itm_output.bias.copy_(torch.tensor([1.0, 0.0]))
    held = evaluate(module, _held_out(demo), load_tokenizer(None).mask_token_id)
    assert held["itm_acc"] == 0.5
    assert held["itm_acc_matched"] == 0.0 and held["itm_acc_mismatched"] == 1.0
    assert held["itm_ranking"] == 0.0  # equal scores: the matched pair never ranks higher
    assert module.training  # evaluation leaves the module's mode as it found it


def test_with_the_same_regions_in_every_image_the_image_cannot_help(demo: Path) -> None:
    pairs = _held_out(demo)
    for pair in pairs:  # planted: every "other image" is the true one in all but its name
        pair.feats, pair.boxes = pairs[0].feats, pairs[0].boxes
    held = evaluate(_module(demo), pairs, load_tokenizer(None).mask_token_id)
    assert held["mlm_true_image"] == held["mlm_other_image"]
    assert held["itm_ranking"] == 0.0
    assert held["itm_acc_matched"] == pytest.approx(1 - held["itm_acc_mismatched"])
    assert np.isfinite(held["itm_acc"])


def test_itm_reads_the_mean_of_the_valid_states_or_the_cls(demo: Path) -> None:
    from types import SimpleNamespace

    module = _module(demo)
    assert module.itm_pooling == "cls"  # UNITER's, the default
    module.itm_pooling = "mean"
    hidden = torch.randn(2, 5, module.uniter.config.hidden_size)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = SimpleNamespace(last_hidden_state=hidden, attention_mask=mask, pooler_output=hidden[:, 0])
    logits = module.itm_logits(out)
    expected = torch.stack([hidden[0, :3].mean(0), hidden[1].mean(0)])
    torch.testing.assert_close(logits, module.itm_output(expected))
    hidden[0, 3:] = 1e3  # padding: not read
    torch.testing.assert_close(module.itm_logits(out), logits)
    module.itm_pooling = "cls"
    torch.testing.assert_close(module.itm_logits(out), module.itm_output(hidden[:, 0]))
    with pytest.raises(ValueError, match="model.pretrain.itm_pooling=max is out of range"):
        _settings(demo, itm_pooling="max")


def test_clean_pairs_teach_itm_and_no_masked_pair_does(demo: Path) -> None:
    from vlprobe.pretrain.data import PairCollator

    pairs = training_pairs(
        demo / "flickr30k", demo / "visual_genome", demo / "features" / "butd.tsv",
        [0.8, 0.1, 0.1], load_tokenizer(None), DIM,
    )  # fmt: skip
    collate = PairCollator(pairs, load_tokenizer(None), negative_prob=1 / 3, clean_prob=1 / 3)
    batch = collate(list(range(len(pairs))) * 4)
    masked = (batch["mlm_labels"] != -100).any(1) | batch["img_masked"].bool().any(1)
    read = batch["itm_mask"].bool()
    assert torch.equal(read, ~masked)  # ITM reads exactly the unmasked pairs
    assert abs(float(batch["itm_labels"][read].float().mean()) - 0.5) < 0.07  # balanced
    assert abs(float(masked.float().mean()) - 1 / 3) < 0.07
    old = PairCollator(pairs, load_tokenizer(None))(list(range(len(pairs))))
    assert old["itm_mask"].all()  # without clean pairs ITM reads every pair, as before

    module = _module(demo)
    module.eval()
    small = collate(list(range(8)))
    with torch.no_grad():
        losses = module.losses(small)
        out = module.uniter(
            input_ids=small["input_ids"], attention_mask=small["attention_mask"],
            img_feat=small["img_feat"], img_pos_feat=small["img_pos_feat"],
            img_mask=small["img_mask"], img_masked=small["img_masked"],
        )  # fmt: skip
        rows = small["itm_mask"].bool()
        expected = torch.nn.functional.cross_entropy(
            module.itm_logits(out)[rows], small["itm_labels"][rows]
        )
    torch.testing.assert_close(losses["itm"], expected)
