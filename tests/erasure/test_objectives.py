"""uniter-mini's own objectives under erasure: pre-training's held-out evaluation, hooked."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from vlprobe.intervention.erasers import Eraser, random_subspace
from vlprobe.intervention.objectives import HeldOut, evaluate_erased, load_held_out
from vlprobe.models.tokenization import load_tokenizer
from vlprobe.models.uniter import build_random
from vlprobe.pretrain.data import held_out_pairs
from vlprobe.pretrain.evaluate import evaluate
from vlprobe.pretrain.module import UniterPretraining
from vlprobe.pretrain.steplog import PretrainLog
from vlprobe.pretrain.uniter_mini import PretrainSettings, init_from_minilm, mini_config, save

LAYERS = 2


def _module(feature_dim: int) -> UniterPretraining:
    torch.manual_seed(0)
    model = build_random(mini_config(LAYERS, feature_dim))
    init_from_minilm(model)
    return UniterPretraining(model)


@pytest.fixture(scope="module")
def held(demo_root: Path, feature_dim: int) -> HeldOut:
    """Held-out pairs whose images all have the same number of regions (the first N of each):
    with every region state erased to one vector, the true and another image are then the
    same input."""
    tokenizer = load_tokenizer(None)
    pairs = held_out_pairs(
        demo_root / "flickr30k", demo_root / "features" / "butd.tsv", tokenizer, feature_dim
    )
    n = min(len(p.feats) for p in pairs)
    for p in pairs:
        p.feats, p.boxes = p.feats[:n], p.boxes[:n]
    module = _module(feature_dim)
    module.eval()
    return HeldOut(module, pairs, int(tokenizer.mask_token_id), seed=0)


def test_identity_eraser_gives_the_plain_evaluation_exactly(held: HeldOut) -> None:
    plain = evaluate(held.module, held.pairs, held.mask_id, captions=40, seed=0)
    for layer in range(LAYERS + 1):
        same = evaluate_erased(
            held, Eraser.identity(held.module.uniter.config.hidden_size), layer, 40
        )
        assert same == plain
    assert evaluate_erased(held, None, 1, 40) == plain


def test_erasing_every_region_direction_takes_the_image_away(held: HeldOut) -> None:
    """Planted: a full-rank eraser at layer 0 maps every region to one state, so the heads
    can no longer tell the true image from another (MLM equal with both, ITM at one half);
    erased after the last layer, which the heads do not read (text states, [CLS]), nothing
    changes."""
    d = int(held.module.uniter.config.hidden_size)
    plain = evaluate_erased(held, None, 0, 40)
    assert plain["itm_ranking"] > 0.1 or plain["mlm_true_image"] != plain["mlm_other_image"]
    everything = random_subspace(d, d, np.full(d, 0.3), seed=0)
    erased = evaluate_erased(held, everything, 0, 40)
    assert erased["mlm_true_image"] == erased["mlm_other_image"]
    # the same input twice: called the same (up to the batches' padding), right half the time
    assert erased["itm_acc"] == 0.5
    assert erased["itm_acc_matched"] == pytest.approx(1 - erased["itm_acc_mismatched"])
    assert erased["mlm_tokens"] == plain["mlm_tokens"] and erased["captions"] == 40
    top = evaluate_erased(held, everything, LAYERS, 40)
    assert top == plain  # regions erased after the last layer: MLM and ITM read text tokens


def _saved(module: UniterPretraining, tmp_path: Path, demo_root: Path, feature_dim: int) -> Path:
    """``module`` saved as pre-training saves uniter-mini, with the demo's settings."""
    settings = PretrainSettings(
        flickr30k=str(demo_root / "flickr30k"),
        visual_genome=str(demo_root / "visual_genome"),
        features=str(demo_root / "features" / "butd.tsv"),
        feature_dim=feature_dim,
        layers=LAYERS,
    )
    folder = tmp_path / "uniter-mini-test"
    save(module, load_tokenizer(None), folder, {"settings": asdict(settings)}, PretrainLog())
    return folder


def test_saved_heads_load_as_pre_training_left_them(
    tmp_path: Path, demo_root: Path, feature_dim: int
) -> None:
    module = _module(feature_dim)
    folder = _saved(module, tmp_path, demo_root, feature_dim)
    loaded = load_held_out(folder)
    saved = module.state_dict()
    for name, value in loaded.module.state_dict().items():
        torch.testing.assert_close(value, saved[name].half().float(), rtol=0, atol=0)
    assert loaded.seed == 0 and loaded.pairs and not loaded.module.training


def test_a_folder_without_heads_is_refused(
    tmp_path: Path, demo_root: Path, feature_dim: int
) -> None:
    folder = _saved(_module(feature_dim), tmp_path, demo_root, feature_dim)
    state = torch.load(folder / "uniter-mini.pt", weights_only=True)
    torch.save(
        {k: v for k, v in state.items() if k.startswith("uniter.")}, folder / "uniter-mini.pt"
    )
    with pytest.raises(ValueError, match="not uniter-mini's encoder and heads"):
        load_held_out(folder)


def test_the_study_reports_the_objectives_change_against_the_random_control(
    held: HeldOut, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``task=concept_erasure``'s objective rows: each role's cache eraser hooked at the task's
    layer, compared like every measure (LEACE - random over the draws)."""
    from probes.tasks import concept_erasure as study

    d = int(held.module.uniter.config.hidden_size)
    erasers = {  # planted: "LEACE" takes the image away, the random draws erase one direction
        "model": None,
        "leace": random_subspace(d, d, np.full(d, 0.3), seed=0),
        "random_0": random_subspace(d, 1, np.zeros(d), seed=1),
        "random_1": random_subspace(d, 1, np.zeros(d), seed=2),
    }
    monkeypatch.setattr(study, "cache_eraser", lambda role: erasers[role])
    task = study.ConceptErasureTask(layer=0, draws=2, objective_captions=40)
    rows = []
    for role in erasers:
        kind = "plain" if role == "model" else role.split("_")[0]
        found = task.objective_rows(held, role, role)  # type: ignore[arg-type]
        rows += [{**r, "intervention": kind} for r in found]
    compared = {c["measure"]: c for c in study.compare(rows, 0)}
    assert set(compared) == {f"objective_{k}" for k in study.OBJECTIVES}
    mlm = compared["objective_mlm_true_image"]
    leace = evaluate_erased(held, erasers["leace"], 0, 40)["mlm_true_image"]
    randoms = [evaluate_erased(held, erasers[r], 0, 40)["mlm_true_image"] for r in erasers][2:]
    assert mlm["plain"] == evaluate_erased(held, None, 0, 40)["mlm_true_image"]
    assert mlm["leace"] == leace and mlm["random_per_draw"] == randoms
    assert mlm["leace_minus_random"] == pytest.approx(leace - np.mean(randoms))
    assert "on erased layer" not in mlm["name"]  # the output, not a state at the layer
    itm = compared["objective_itm_acc"]
    assert itm["leace"] == 0.5 and itm["n_test"] == 80  # both pairs of 40 captions
