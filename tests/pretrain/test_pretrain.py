"""uniter-mini: masking and pairing rules, a pre-training run that learns, save/reuse/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlprobe.models.base import ModelInput
from vlprobe.models.tokenization import load_tokenizer
from vlprobe.pretrain.data import SCENE, PairCollator, link_spans, training_pairs
from vlprobe.pretrain.uniter_mini import (
    CHECKPOINT,
    RECORD,
    PretrainSettings,
    model_folder,
    training_data_hash,
)
from vlprobe.testing.models import build_adapter

DIM = 32


def tiny_demo(root: Path) -> Path:
    """The tiny demo data (20 scenes, ``DIM``-wide regions) that these tests pre-train on."""
    from vlprobe.synthetic import make_demo_data

    make_demo_data(root, scenes=20, seed=2, feature_dim=DIM, senteval_per_task=10)
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_demo(tmp_path_factory.mktemp("pretrain-demo"))


def _settings(demo: Path, **kw) -> dict:
    base = {
        "flickr30k": str(demo / "flickr30k"),
        "visual_genome": str(demo / "visual_genome"),
        "features": str(demo / "features" / "butd.tsv"),
        "feature_dim": DIM,
        "layers": 1,
        "steps": 3,
        "batch_size": 4,
    }
    return {**base, **kw}


def test_pairs_are_training_images_only(demo: Path) -> None:
    from vlprobe.data.builders import build_flickr_examples, build_vg_examples
    from vlprobe.data.region_features import load_region_features

    tokenizer = load_tokenizer(None)
    pairs = training_pairs(
        demo / "flickr30k", demo / "visual_genome", demo / "features" / "butd.tsv",
        [0.8, 0.1, 0.1], tokenizer, DIM,
    )  # fmt: skip
    feats = load_region_features(demo / "features" / "butd.tsv")
    flickr = build_flickr_examples(demo / "flickr30k", feats)
    vg = build_vg_examples(demo / "visual_genome", feats)
    train = {ex.group_id for ex in flickr if ex.split == "train"}
    train &= {ex.group_id for ex in vg if ex.split == "train"}
    assert {p.image_id for p in pairs} == train
    per_image = sum(1 for ex in flickr if ex.group_id in train)
    assert len(pairs) == per_image  # every caption of those images
    assert all(p.boxes.shape == (len(p.feats), 7) for p in pairs)


def _pairs(demo: Path) -> list:
    return training_pairs(
        demo / "flickr30k", demo / "visual_genome", demo / "features" / "butd.tsv",
        [0.8, 0.1, 0.1], load_tokenizer(None), DIM,
    )  # fmt: skip


def test_collator_masks_one_modality_of_matched_pairs_and_mismatches_the_rest(demo: Path) -> None:
    tokenizer = load_tokenizer(None)
    pairs = _pairs(demo)
    collate = PairCollator(pairs, tokenizer, mask_prob=0.3, seed=0, mrfr_share=0.5)
    batch = collate(list(range(len(pairs))) * 2)
    itm = batch["itm_labels"]
    assert 0.3 < itm.float().mean() < 0.7
    labels, ids = batch["mlm_labels"], batch["input_ids"]
    assert (labels[itm == 0] == -100).all() and (batch["img_masked"][itm == 0] == 0).all()
    words_masked = (labels != -100).any(1)
    regions_masked = batch["img_masked"].bool().any(1)
    assert not (words_masked & regions_masked).any()  # one modality at a time, as UNITER
    assert torch.equal(words_masked | regions_masked, itm.bool())  # every matched pair teaches
    assert 0.3 < regions_masked[itm == 1].float().mean() < 0.7
    for b in torch.nonzero(itm).flatten().tolist():
        pair = pairs[b % len(pairs)]
        original = torch.as_tensor(pair.input_ids)
        n = len(original)
        chosen = labels[b, :n] != -100
        assert torch.equal(labels[b, :n][chosen], original[chosen])
        assert not chosen[0] and not chosen[n - 1]  # never [CLS] / [SEP]
        assert torch.equal(ids[b, :n][~chosen], original[~chosen])
        masked = batch["img_masked"][b].bool()
        assert (batch["img_feat"][b][masked] == 0).all()
        torch.testing.assert_close(batch["img_target"][b, : len(pair.feats)],
                                   torch.as_tensor(pair.feats))  # fmt: skip
    for b in torch.nonzero(itm == 0).flatten().tolist():
        caption = ids[b, : int(batch["attention_mask"][b].sum())].numpy()
        owners = {p.image_id for p in pairs if np.array_equal(p.input_ids, caption)}
        assert pairs[b % len(pairs)].image_id not in owners  # a caption of another image
    mlm = itm.bool() & ~regions_masked
    share = (labels[mlm] != -100).sum() / (batch["attention_mask"][mlm].sum() - 2 * mlm.sum())
    assert 0.2 < share < 0.45
    no_mrfr = PairCollator(pairs, tokenizer, mask_prob=0.3, seed=0, mrfr=False)(range(len(pairs)))
    assert not no_mrfr["img_masked"].any()


def test_link_spans_are_the_words_between_two_grounded_phrases() -> None:
    # [CLS] [a man] riding [a horse] on [the beach] , while he sees [someone]
    phrases = [(5, 7, "animals"), (1, 3, "people"), (8, 10, "scene"), (14, 15, "people")]
    assert link_spans(phrases) == [(3, 5), (7, 8)]  # gaps of 2 and 1 tokens; 4 are too long
    assert link_spans(phrases, longest=3) == link_spans(phrases)
    assert link_spans(phrases, longest=4) == [(3, 5), (7, 8), (10, 14)]
    assert link_spans([(1, 3, "a"), (3, 5, "b")]) == []  # adjacent phrases link nothing
    assert link_spans(phrases, skip=("scene",)) == [(3, 5)]  # "on [the beach]" places


def test_grounded_phrases_and_their_links_are_masked_at_their_own_rates(demo: Path) -> None:
    pairs = _pairs(demo)
    assert all(p.phrases for p in pairs)  # every demo caption names something in its image
    collate = PairCollator(
        pairs, load_tokenizer(None), 0.1, negative_prob=0.0, phrase_mask_prob=0.6,
        link_mask_prob=0.8, mrfr=False,
    )  # fmt: skip
    hits: dict[str, list[bool]] = {"phrase": [], "link": [], "other": []}
    for _ in range(20):
        labels = collate(range(len(pairs)))["mlm_labels"]
        for b, pair in enumerate(pairs):
            kind = np.full(len(pair.input_ids), "other", dtype=object)
            for start, end in link_spans(pair.phrases):
                kind[start:end] = "link"
            for start, end, _ in pair.phrases:
                kind[start:end] = "phrase"
            kind[[0, -1]] = None  # [CLS], [SEP]
            chosen = (labels[b, : len(kind)] != -100).numpy()
            for name, rows in hits.items():
                rows += chosen[kind == name].tolist()
    assert len(hits["link"]) > 1000  # "riding", "next to", "and": most captions have one
    assert abs(np.mean(hits["phrase"]) - 0.6) < 0.03
    assert abs(np.mean(hits["link"]) - 0.8) < 0.03
    assert abs(np.mean(hits["other"]) - 0.1) < 0.03  # a few more: the one-word minimum


def test_hard_negatives_swap_one_phrase_for_another_images_phrase_of_its_type(demo: Path) -> None:
    tokenizer = load_tokenizer(None)
    pairs = _pairs(demo)
    assert all(e > s >= 1 for p in pairs for s, e, _ in p.phrases)  # after [CLS]
    collate = PairCollator(pairs, tokenizer, negative_prob=1.0, hard_prob=1.0, seed=3)
    batch = collate(range(len(pairs)))
    assert (batch["itm_labels"] == 0).all() and (batch["mlm_labels"] == -100).all()
    swapped = 0
    for b, pair in enumerate(pairs):
        caption = batch["input_ids"][b, : int(batch["attention_mask"][b].sum())].numpy()
        own = {t for p in pairs if p.image_id == pair.image_id for s, e, _ in p.phrases
               for t in p.input_ids[s:e]}  # fmt: skip
        matches = []
        for start, end, kind in pair.phrases:
            tail = len(pair.input_ids) - end
            middle = caption[start : len(caption) - tail]
            if (
                np.array_equal(caption[:start], pair.input_ids[:start])
                and np.array_equal(caption[len(caption) - tail :], pair.input_ids[end:])
                and not set(middle.tolist()) <= own
                and any(np.array_equal(middle, o.input_ids[s:e]) and k == kind
                        and o.image_id != pair.image_id
                        for o in pairs for s, e, k in o.phrases)
            ):  # fmt: skip
                matches.append(kind)
        swapped += bool(matches)
    assert swapped >= 0.9 * len(pairs)  # the rest fell back to another image's caption


def test_relation_negatives_swap_the_words_linking_two_phrases(demo: Path) -> None:
    tokenizer = load_tokenizer(None)
    pairs = _pairs(demo)
    collate = PairCollator(pairs, tokenizer, negative_prob=1.0, relation_prob=1.0, seed=4)
    batch = collate(range(len(pairs)))
    assert (batch["itm_labels"] == 0).all()
    bank = {tuple(p.input_ids[s:e]) for p in pairs for s, e in link_spans(p.phrases, skip=SCENE)}
    and_ = tokenizer.convert_tokens_to_ids("and")
    assert (and_,) in bank and (and_,) not in {tuple(t) for t in collate.links}  # no relation
    swapped = with_link = 0
    for b, pair in enumerate(pairs):
        spans = [
            (s, e)
            for s, e in link_spans(pair.phrases, skip=SCENE)
            if tuple(pair.input_ids[s:e]) != (and_,)
        ]
        with_link += bool(spans)
        caption = batch["input_ids"][b, : int(batch["attention_mask"][b].sum())].numpy()
        for start, end in spans:
            tail = len(pair.input_ids) - end
            middle = tuple(caption[start : len(caption) - tail].tolist())
            if (
                np.array_equal(caption[:start], pair.input_ids[:start])
                and np.array_equal(caption[len(caption) - tail :], pair.input_ids[end:])
                and middle in bank
                and middle != tuple(pair.input_ids[start:end])
            ):
                swapped += 1
                break
    assert with_link > 0.5 * len(pairs)
    assert swapped >= 0.9 * with_link  # the rest fell back to another image's caption


def test_pretraining_lowers_the_losses(demo: Path) -> None:
    from vlprobe.models.uniter import build_random
    from vlprobe.pretrain.module import UniterPretraining
    from vlprobe.pretrain.uniter_mini import init_from_minilm, mini_config

    torch.manual_seed(0)
    tokenizer = load_tokenizer(None)
    pairs = training_pairs(
        demo / "flickr30k", demo / "visual_genome", demo / "features" / "butd.tsv",
        [0.8, 0.1, 0.1], tokenizer, DIM,
    )  # fmt: skip
    model = build_random(mini_config(1, DIM))
    init_from_minilm(model)
    module = UniterPretraining(model, mrfr=True, contrastive=1.0)
    batch = PairCollator(pairs, tokenizer, seed=1, mrfr_share=0.5)(list(range(12)))
    params = [p for p in module.parameters() if p.requires_grad]
    assert not model.embeddings.word_embeddings.weight.requires_grad
    optimizer = torch.optim.AdamW(params, lr=1e-3)

    def evaluate() -> dict[str, float]:
        module.eval()
        with torch.no_grad():
            return {k: float(v) for k, v in module.losses(batch).items()}

    first = evaluate()
    assert {"mlm", "itm", "mrfr", "contrastive"} <= set(first)  # every kind of pair
    for _ in range(25):
        module.train()
        losses = module.losses(batch)
        optimizer.zero_grad()
        (losses["mlm"] + losses["itm"] + losses["mrfr"] + losses["contrastive"]).backward()
        optimizer.step()
    last = evaluate()
    assert last["mlm"] < 0.5 * first["mlm"] and last["itm"] < first["itm"]
    assert last["mrfr"] < first["mrfr"] and last["contrastive"] < first["contrastive"]


def test_uniter_mini_is_built_once_then_reused(demo: Path, tmp_path: Path) -> None:
    settings = _settings(demo)
    adapter = build_adapter("uniter-mini", pretrain=settings, out_dir=tmp_path, progress=False)
    folder = model_folder(PretrainSettings(**settings), tmp_path)
    ckpt = folder / CHECKPOINT
    state = torch.load(ckpt)
    assert any(k.startswith("uniter.encoder.layer.0.") for k in state)
    assert {"itm_output.weight", "cls.predictions.bias"} <= set(state)  # heads, as released
    assert all(v.dtype == torch.float16 for v in state.values())
    record = json.loads((folder / RECORD).read_text())
    assert record["settings"]["steps"] == 3 and record["seconds"] > 0
    assert record["training_data_sha256"] == training_data_hash(PretrainSettings(**settings))
    assert adapter.name == "uniter-mini" and adapter.num_layers == 1
    assert adapter.provenance()["revision"] == "local"

    stamp = ckpt.stat().st_mtime_ns
    again = build_adapter("uniter-mini", pretrain=settings, out_dir=tmp_path, progress=False)
    assert ckpt.stat().st_mtime_ns == stamp  # reused, not trained again
    random = build_adapter(
        "uniter-mini", pretrain=settings, out_dir=tmp_path, progress=False, random_init=True
    )
    assert random.provenance()["config_sha256"] == again.provenance()["config_sha256"]
    assert random.provenance()["revision"] == "random-init"
    (text,) = again.encode([ModelInput(words=["a", "dog", "on", "the", "grass"])])
    assert text.hidden.shape[0] == 2 and (text.modality == 0).all()


def test_vlprobe_pretrain_command(demo: Path, tmp_path: Path, capsys) -> None:
    from vlprobe.cli import main

    overrides = [
        f"data.root={demo}",
        "data.make_demo=false",
        f"data.feature_dim={DIM}",
        f"model.out_dir={tmp_path}",
        "model.progress=false",
        "model.pretrain.layers=1",
        "model.pretrain.steps=1",
        "model.pretrain.batch_size=4",
    ]
    assert main(["pretrain", *overrides]) == 0
    (folder,) = (p for p in tmp_path.glob("uniter-mini-*") if p.is_dir())  # not its .lock
    assert (folder / CHECKPOINT).is_file() and str(folder) in capsys.readouterr().out
    assert main(["pretrain", *overrides, "model.pretrain.steps=-1"]) == 2  # a bad setting: exit 2
    err = capsys.readouterr().err  # one line: the key, its value and the range to give
    assert "model.pretrain.steps=-1 is out of range: give >= 0" in err
    missing = tmp_path / "nope.tsv"  # a training input that is not there: named, nothing saved
    assert (
        main(
            ["pretrain", *overrides, "model.pretrain.steps=2", f"model.pretrain.features={missing}"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        f"model.pretrain.features={missing} does not exist: point it (or "
        "data.features, which it follows by default) at the training data"
    )
    assert [p for p in tmp_path.glob("uniter-mini-*") if p.is_dir()] == [folder]


def test_the_same_settings_on_other_training_data_are_another_model(tmp_path: Path) -> None:
    from vlprobe.synthetic import make_demo_data

    root = tmp_path / "demo"
    make_demo_data(root, scenes=20, seed=2, feature_dim=DIM, senteval_per_task=10)
    settings = PretrainSettings(**_settings(root))
    first = model_folder(settings, tmp_path)
    make_demo_data(root, scenes=20, seed=2, feature_dim=DIM, senteval_per_task=10)
    assert model_folder(settings, tmp_path) == first  # rewritten, same content: reused
    # the demo rebuilt with more scenes at the same paths: other images in every split, so
    # the old model may have trained on today's test images
    make_demo_data(root, scenes=24, seed=2, feature_dim=DIM, senteval_per_task=10)
    assert model_folder(settings, tmp_path) != first
    features = root / "features" / "butd.tsv"
    before = model_folder(settings, tmp_path)
    features.write_text(features.read_text() + "\n")  # one byte more
    assert model_folder(settings, tmp_path) != before


def test_settings_that_are_the_same_number_name_one_model(demo: Path) -> None:
    settings = _settings(demo)
    assert (
        PretrainSettings(**settings, wra=1, lr=1).digest()
        == PretrainSettings(**settings, wra=1.0, lr=1.0).digest()
        != PretrainSettings(**settings, wra=0.5, lr=1.0).digest()
    )
    with pytest.raises(ValueError, match=r"model.pretrain.wra='x' is not a number"):
        PretrainSettings(**settings, wra="x")
    # the two kinds of hard negative share the negatives: together at most all of them
    PretrainSettings(**settings, hard_negative_prob=0.5, relation_negative_prob=0.5)
    with pytest.raises(ValueError, match=r"relation_negative_prob=0.6 .* \[0, 1 - hard_neg"):
        PretrainSettings(**settings, hard_negative_prob=0.5, relation_negative_prob=0.6)


def test_region_reconstruction_regresses_every_visible_region_and_nothing_else(demo: Path) -> None:
    from vlprobe.models.uniter import build_random
    from vlprobe.pretrain.module import UniterPretraining
    from vlprobe.pretrain.uniter_mini import mini_config

    torch.manual_seed(0)
    pairs = _pairs(demo)
    module = UniterPretraining(build_random(mini_config(1, DIM)), mrfr=False, region_recon=2.0)
    module.eval()
    batch = PairCollator(pairs, load_tokenizer(None), 0.5, seed=1, mrfr_share=1.0)(range(8))
    assert batch["img_masked"].any()  # some regions are masked: they must not count
    losses = module.losses(batch)
    assert "mrfr" not in losses
    out = module.uniter(**{k: batch[k] for k in ("input_ids", "attention_mask", "img_feat")},
                        img_pos_feat=batch["img_pos_feat"], img_mask=batch["img_mask"],
                        img_masked=batch["img_masked"])  # fmt: skip
    errors = []
    for b in range(8):  # region r of example b sits right after its n_text words
        n_text = int(batch["attention_mask"][b].sum())
        for r in range(int(batch["img_mask"][b].sum())):
            if not batch["img_masked"][b, r]:
                state = out.last_hidden_state[b, n_text + r]
                target = batch["img_target"][b, r]
                errors.append(((module.feat_regress(state) - target) ** 2).mean())
    expected = 2.0 * torch.stack(errors).mean()
    torch.testing.assert_close(losses["recon"], expected, rtol=1e-5, atol=1e-6)


def test_zero_steps_saves_the_text_init_control(demo: Path, tmp_path: Path) -> None:
    """``steps=0``: MiniLM's text side as it is, the region side untrained: no V+L training.

    With ``contrastive_steps`` only the region embeddings have learned.
    """
    from transformers import AutoModel

    from vlprobe.models.tokenization import default_text_model_path
    from vlprobe.pretrain.uniter_mini import ensure_pretrained

    bert = AutoModel.from_pretrained(str(default_text_model_path()), local_files_only=True)
    states, records = [], []
    for contrastive_steps in (0, 5):
        settings = PretrainSettings(**_settings(demo, steps=0, contrastive_steps=contrastive_steps))
        folder = ensure_pretrained(settings, tmp_path, False)
        states.append(torch.load(folder / CHECKPOINT))
        records.append(json.loads((folder / RECORD).read_text()))
        for key, value in bert.state_dict().items():
            if not key.startswith("encoder.layer.") or key.startswith("encoder.layer.0."):
                assert torch.equal(states[-1][f"uniter.{key}"], value.half()), key
        assert records[-1]["final"] == {}
    assert records[0]["contrastive_loss"] == [] and len(records[1]["contrastive_loss"]) == 5
    # the encoder's tensors (the pre-training heads are drawn after the stage, from other draws)
    encoder = [k for k in states[0] if k.startswith("uniter.")]
    learned = [k for k in encoder if not torch.equal(states[0][k], states[1][k])]
    assert learned and all(k.startswith("uniter.img_embeddings.") for k in learned)


@pytest.mark.parametrize("encoder_scale", [0.1, 0.0])
def test_learning_rates_of_the_region_side_the_encoder_and_the_heads(encoder_scale: float) -> None:
    from types import SimpleNamespace

    from vlprobe.models.uniter import build_random
    from vlprobe.pretrain.module import UniterPretraining
    from vlprobe.pretrain.uniter_mini import mini_config

    module = UniterPretraining(
        build_random(mini_config(1, DIM)),
        lr=1e-3,
        region_lr_scale=10,
        encoder_lr_scale=encoder_scale,
    )
    module.trainer = SimpleNamespace(max_steps=10)
    optimizer = module.configure_optimizers()["optimizer"]
    # the warm-up schedule has set every "lr" to 0; "initial_lr" is the rate it scales
    lr_of = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    for name, param in module.named_parameters():
        if name.startswith("uniter.img_embeddings."):
            expected = 1e-2
        elif name.startswith("uniter."):
            expected = 1e-3 * encoder_scale or None  # frozen: not optimised at all
        else:
            expected = 1e-3  # the heads start random
        if name == "uniter.embeddings.word_embeddings.weight":
            expected = None  # tied to the MLM decoder, always frozen
        assert (
            lr_of.get(id(param)) == pytest.approx(expected) if expected else id(param) not in lr_of
        ), name
        assert param.requires_grad == (expected is not None), name


def test_two_runs_needing_the_same_model_train_it_once(demo: Path, tmp_path: Path, monkeypatch):
    """A parallel sweep: the second run waits on the lock, then reuses what the first saved."""
    import threading
    import time

    from vlprobe.pretrain import uniter_mini

    calls = []

    def slow_pretrain(settings, folder, progress, threads, logger):  # noqa: ANN001, ANN202
        calls.append(folder)
        time.sleep(0.5)  # the other run arrives while this one trains
        folder.mkdir(parents=True)
        (folder / CHECKPOINT).write_bytes(b"weights")
        return {"seconds": 0.5, "cpu_seconds": 0.5, "threads": 1, "final": {}}

    monkeypatch.setattr(uniter_mini, "pretrain", slow_pretrain)
    settings = PretrainSettings(**_settings(demo))
    folders = []
    runs = [
        threading.Thread(
            target=lambda: folders.append(uniter_mini.ensure_pretrained(settings, tmp_path, False))
        )
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(calls) == 1 and folders == [calls[0], calls[0]]
