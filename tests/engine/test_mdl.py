"""MDL online code through the engine: the full-batch path against a scikit-learn online code
on the same blocks, and planted signal vs noise on both solvers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from probes.run import build_engine
from probes.tasks.visual_relation import VisualRelationTask
from vlprobe.analysis.mdl import MDL_C_GRID, PRIOR_C, online_blocks, prior_codelength
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import SPLIT_IDS

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("subtask", ["identification", "classification"])
def test_full_batch_mdl_matches_sklearn_online_code(
    compose_cfg, planted_cache: Path, monkeypatch: pytest.MonkeyPatch, subtask: str
) -> None:
    """Same blocks, same candidates (every C of the grid and the label prior), same coded
    probabilities: both minimise the same convex objective, solved to a gradient tolerance of
    1e-4, so per block they pick the same C and the code lengths differ only by the solvers'
    stopping tests: measured < 0.01% on noise; on the planted layer, whose 1,600 labels cost ~12
    bits, 0.5 bits (1% or 1 bit allowed)."""
    monkeypatch.syspath_prepend(str(BENCH))
    from mdl_vs_sklearn import sklearn_online_codelength

    task = VisualRelationTask(subtasks=(subtask,), inputs=("embedding",))
    # layer 2 carries the label, layer 3 does not
    [(name, view)] = task.views(CacheReader(planted_cache), [2, 3])
    cfg = compose_cfg(["logger=none", "trainer=cpu", "probing.mdl=true", "seed=0"])
    rows = build_engine(cfg, []).train_view(view, name)
    order, edges = online_blocks(view.rows(SPLIT_IDS["train"]), seed=0)
    val = view.rows(SPLIT_IDS["val"])
    x = view.read(np.arange(len(view.labels))).astype(np.float64)
    agree = []
    for k, row in enumerate(rows):
        assert row["solver"] == "lbfgs"
        sk = sklearn_online_codelength(
            x[:, k], view.labels, order, edges, val, view.num_classes, list(MDL_C_GRID)
        )
        assert row["mdl_codelength_bits"] == pytest.approx(
            sk["online_codelength"], rel=0.01, abs=1.0
        )
        assert row["mdl_uniform_bits"] == pytest.approx(sk["uniform_codelength"])
        agree += [a == b for a, b in zip(row["mdl_block_C"], sk["chosen_C"], strict=True)]
    assert np.mean(agree) >= 0.9  # a near-tie on validation may flip a block's choice


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_planted_signal_compresses_noise_does_not(planted_rows, solver: str) -> None:
    """Only layer 2 carries the label. Noise costs about the uniform code (the label prior is
    a candidate of every block, so no block costs much more than it), never much less."""
    noise, signal = planted_rows(
        [
            "probing.mdl=true",
            "probing.mdl_fractions=[0.05,0.25,1.0]",
            "probing.layers=[0,2]",
            f"probing.solver={solver}",
        ]
    )
    assert signal["mdl_uniform_bits"] == pytest.approx(noise["mdl_uniform_bits"])
    assert signal["mdl_compression"] > 5
    assert 0.95 < noise["mdl_compression"] <= 1.01
    assert len(noise["mdl_block_C"]) == 2  # one choice per coded block


def test_voita_variant_matches_a_plain_sklearn_online_code(
    compose_cfg, planted_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``probing.mdl_variant=voita``: per block the grid's fits only, raw probabilities, against
    scikit-learn coding the same blocks that way (blocks large enough to see both classes).
    Beside it, the prior's online code and the uniform code by hand."""
    monkeypatch.syspath_prepend(str(BENCH))
    from mdl_vs_sklearn import sklearn_online_codelength

    task = VisualRelationTask(subtasks=("identification",), inputs=("embedding",))
    [(name, view)] = task.views(CacheReader(planted_cache), [2, 3])
    fractions = [0.05, 0.25, 1.0]
    cfg = compose_cfg(
        [
            "logger=none",
            "trainer=cpu",
            "probing.mdl=true",
            "probing.mdl_variant=voita",
            f"probing.mdl_fractions=[{','.join(map(str, fractions))}]",
            "seed=0",
        ]
    )
    rows = build_engine(cfg, []).train_view(view, name)
    order, edges = online_blocks(view.rows(SPLIT_IDS["train"]), 0, fractions)
    val = view.rows(SPLIT_IDS["val"])
    x = view.read(np.arange(len(view.labels))).astype(np.float64)
    prior = prior_codelength(view.labels[order], edges, 2, smoothing=0.0)
    for k, row in enumerate(rows):
        sk = sklearn_online_codelength(
            x[:, k], view.labels, order, edges, val, 2, list(MDL_C_GRID), variant="voita"
        )
        assert row["mdl_variant"] == "voita"
        assert row["mdl_codelength_bits"] == pytest.approx(
            sk["online_codelength"], rel=0.01, abs=1.0
        )
        assert PRIOR_C not in row["mdl_block_C"]
        assert row["mdl_uniform_bits"] == pytest.approx(len(order) * math.log2(2))
        assert row["mdl_prior_bits"] == pytest.approx(prior)
        assert row["mdl_prior_compression"] == pytest.approx(row["mdl_uniform_bits"] / prior)
        assert row["mdl_compression_over_prior"] == pytest.approx(
            prior / row["mdl_codelength_bits"]
        )


def test_the_prior_fallback_is_what_separates_the_variants(planted_rows) -> None:
    """On the noise layer the default codes some blocks with the label prior (``C`` = 0) and
    the voita variant, which has no such candidate, pays for fitting noise; on the signal
    layer both compress far beyond the prior."""
    common = ["probing.mdl=true", "probing.mdl_fractions=[0.05,0.25,1.0]", "probing.layers=[0,2]"]
    smoothed = planted_rows(common)
    voita = planted_rows([*common, "probing.mdl_variant=voita"])
    (noise, signal), (plain_noise, plain_signal) = smoothed, voita
    assert noise["mdl_variant"] == "smoothed" and PRIOR_C in noise["mdl_block_C"]
    assert PRIOR_C not in plain_noise["mdl_block_C"]
    assert plain_noise["mdl_codelength_bits"] > noise["mdl_codelength_bits"] + 1
    assert 0.95 < noise["mdl_compression_over_prior"] <= 1.01
    assert plain_noise["mdl_compression_over_prior"] < noise["mdl_compression_over_prior"]
    for row in (signal, plain_signal):
        assert row["mdl_compression_over_prior"] > 5
    # one prior per variant, whatever the layer; the uniform code is the variants' common line
    assert signal["mdl_prior_bits"] == noise["mdl_prior_bits"]
    assert plain_noise["mdl_uniform_bits"] == noise["mdl_uniform_bits"]
