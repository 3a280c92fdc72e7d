"""Seeds in one run and control tasks with selectivity through the engine (MDL: test_mdl.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from probes.run import console_columns
from probes.selection import at_edge as _at_edge
from probes.settings import DEFAULT_L2
from vlprobe.analysis.stats import mean_std_ci, wilson_interval
from vlprobe.testing.planted import write_planted_relation_cache


def test_seeds_give_mean_std_and_ci(planted_rows) -> None:
    rows = planted_rows(["seeds=[1,2,3]"])
    row = rows[2]
    per_seed = np.array(row["test_acc_per_seed"])
    mean, std, half = mean_std_ci(per_seed[:, None])
    assert row["seeds"] == [1, 2, 3] and len(per_seed) == 3
    assert row["test_acc"] == pytest.approx(mean[0])
    assert row["test_acc_std"] == pytest.approx(std[0])
    assert row["test_acc_ci95"] == pytest.approx(half[0])
    # val F1 is over the seeds too, not the first seed's; L-BFGS has no epochs
    assert row["val_f1"] == pytest.approx(np.mean(row["val_f1_per_seed"]))
    assert len(row["val_f1_per_seed"]) == 3
    assert row["solver"] == "lbfgs" and row["best_epoch"] is None
    # L-BFGS starts from zero on a convex objective: the seed changes nothing, rows say so
    assert row["seed_invariant"] and len(set(per_seed)) == 1 and row["test_acc_std"] == 0
    for r in rows:  # the flag names a choice at either end of the default grid
        assert not r["l2_at_edge"] or r["l2"] in (min(DEFAULT_L2), max(DEFAULT_L2))
        assert r["l2_at_edge"] or r["l2"] != min(DEFAULT_L2)  # the weakest: the only maximum
    # the interval over test examples: Wilson on the mean accuracy and the test-set size
    low, high = wilson_interval(row["test_acc"], row["n_test"])
    assert (row["test_acc_low"], row["test_acc_high"]) == pytest.approx((float(low), float(high)))
    assert row["test_acc_low"] < row["test_acc"] <= row["test_acc_high"]


def test_edge_flag_needs_the_end_of_the_grid_to_be_strictly_best() -> None:
    assert _at_edge(np.array([0.9, 0.8, 0.7]), 0)
    assert _at_edge(np.array([0.7, 0.8, 0.9]), 2)
    assert not _at_edge(np.array([0.7, 0.9, 0.9]), 2)  # also best inside the grid
    assert not _at_edge(np.array([0.5, 0.5, 0.5]), 2)  # flat: no signal, nothing beyond
    assert not _at_edge(np.array([0.7, 0.9, 0.8]), 1)
    assert not _at_edge(np.array([0.9]), 0)  # a grid of one has no edge to widen


def test_adam_seeds_average_best_epoch_and_val_f1(planted_rows) -> None:
    """Best epoch and val F1 over the seeds, not the first seed's (Adam path, which has epochs)."""
    row = planted_rows(["seeds=[1,2,3]", "probing.solver=sgd"])[2]
    for metric in ("best_epoch", "val_f1"):
        assert len(row[f"{metric}_per_seed"]) == 3
        assert row[metric] == pytest.approx(np.mean(row[f"{metric}_per_seed"]))


def test_single_seed_rows_carry_the_test_interval(planted_rows) -> None:
    for row in planted_rows([]):
        k = round(row["test_acc"] * row["n_test"])  # correct test examples
        ci = binomtest(k, row["n_test"]).proportion_ci(method="wilson")
        assert (row["test_acc_low"], row["test_acc_high"]) == pytest.approx((ci.low, ci.high))


def test_control_task_reports_selectivity(planted_rows) -> None:
    rows = planted_rows(["probing.control=true", "probing.shuffled_control=true"])
    signal = next(r for r in rows if r["probe"] == "layer_02")
    assert signal["selectivity"] == pytest.approx(signal["test_acc"] - signal["control_test_acc"])
    assert signal["selectivity"] > 0.3  # the planted layer decodes the task, not the types
    assert all(r["shuffled_test_acc"] < 0.7 for r in rows)


def test_mlp_reaches_the_control_ceiling(planted_rows, tmp_path: Path) -> None:
    """Control types (subject categories) recur in every split and are written into the region
    embeddings: an MLP must get close to the best a type -> label lookup can do on test."""
    cache = write_planted_relation_cache(
        tmp_path / "categories.h5", num_images=250, num_categories=6, category_strength=3.0
    )
    rows = planted_rows(
        ["probe=mlp", "probe.hidden_dim=64", "probing.control=true", "probing.layers=[0]"], cache
    )
    [row] = rows
    assert row["control_type_recurrence"] == 1.0  # 6 categories: every one seen in training
    assert row["control_ceiling"] == 1.0  # so the lookup is exact
    assert row["control_test_acc"] > row["control_ceiling"] - 0.05


def test_console_shows_the_edge_flag_only_when_a_row_raises_it() -> None:
    rows = [{"name": "a", "l2": 0.1, "l2_at_edge": False}]
    assert console_columns(["name"], rows) == ["name", "l2"]
    rows.append({"name": "b", "l2": 100.0, "l2_at_edge": True})
    assert console_columns(["name"], rows) == ["name", "l2", "l2_at_edge"]
    rows[0] |= {"mdl_compression": 1.1, "mdl_compression_over_prior": 1.02}
    assert console_columns(["name"], rows)[-2:] == ["mdl_compression", "mdl_compression_over_prior"]


def test_an_interval_over_two_seeds_is_flagged_in_rows_and_console(planted_rows, caplog) -> None:
    """Issue 25: an interval from fewer than three seeds carries a warning: every row says
    ``few_seeds`` and the run logs one line; three seeds carry no warning."""
    with caplog.at_level(logging.WARNING, logger="probes.run"):
        two = planted_rows(["seeds=[1,2]", "probing.layers=[2]"])
    warned = [r.getMessage() for r in caplog.records if "few_seeds" in r.getMessage()]
    assert len(warned) == 1 and "seeds=[1, 2]" in warned[0] and "t = 12.7" in warned[0]
    assert two and all(r["few_seeds"] is True and "test_acc_ci95" in r for r in two)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="probes.run"):
        three = planted_rows(["seeds=[1,2,3]", "probing.layers=[2]"])
    assert not [r for r in caplog.records if "few_seeds" in r.getMessage()]
    assert all(r["few_seeds"] is False for r in three)
