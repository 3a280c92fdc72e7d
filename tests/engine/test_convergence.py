"""Every full-batch solve runs to scikit-learn's stopping rule; an unconverged penalty is never
chosen silently (issue 25)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from probes.full_batch import LBFGSSettings, lbfgs, stop_names
from probes.plan import LabelSet
from probes.selection import best_candidates, select
from probes.solvers.base import Candidates, Solved
from vlprobe.cache.schema import SPLIT_IDS


@dataclass
class _View:
    """Just what selection reads of a view: names, labels, splits."""

    labels: np.ndarray
    probe_names: list[str]
    row_split: np.ndarray

    def rows(self, split_id: int) -> np.ndarray:
        return np.flatnonzero((self.row_split == split_id) & (self.labels >= 0))

    def with_labels(self, labels: np.ndarray) -> _View:
        return _View(labels, self.probe_names, self.row_split)


def _view() -> _View:
    split = np.array([SPLIT_IDS["train"]] * 4 + [SPLIT_IDS["val"]] * 2 + [SPLIT_IDS["test"]] * 2)
    return _View(np.array([0, 0, 0, 1, 0, 1, 0, 1]), ["p"], split)


def _candidates(*cands: tuple[float, bool | None]) -> Candidates:
    """One probe's candidates, strongest penalty first: (validation accuracy, converged)."""
    rows = []
    for i, (val, converged) in enumerate(cands):
        row = {"name": "task/p", "val_acc": val, "test_acc": val, "l2": 10.0**-i}
        if converged is not None:
            row["converged"] = converged
        rows.append([row])
    return Candidates(LabelSet("task", _view().labels), 0, rows)


def test_a_better_unconverged_penalty_is_passed_over_and_flagged() -> None:
    (row,), (pick,) = best_candidates(_view(), _candidates((0.6, True), (0.9, False)), True)
    assert pick == 0 and row["l2"] == 1.0 and row["converged"] is True
    assert row["unconverged_skipped"] is True
    (row,), (pick,) = best_candidates(_view(), _candidates((0.6, False), (0.9, True)), True)
    assert pick == 1 and row["unconverged_skipped"] is False


def test_when_nothing_converged_the_row_says_so_and_the_run_warns(caplog) -> None:
    from probes.plan import Plan

    view = _view()
    plan = Plan("task", [0], [LabelSet("task", view.labels)], "lbfgs", [], [0.01, 1.0])
    solved = Solved([_candidates((0.6, False), (0.9, False))])
    with caplog.at_level(logging.WARNING, logger="probes.selection"):
        (row,), _ = select(view, plan, solved)
    assert row["converged"] is False and row["val_acc"] == 0.9
    said = [r.getMessage() for r in caplog.records if "no L2 penalty converged" in r.getMessage()]
    assert len(said) == 1 and "task/p" in said[0] and "probing.max_iter" in said[0]


def test_candidates_without_a_convergence_flag_choose_as_before() -> None:
    """Adam rows have no ``converged``: the best on validation wins, nothing flagged."""
    (row,), (pick,) = best_candidates(_view(), _candidates((0.6, None), (0.9, None)), False)
    assert pick == 1 and "unconverged_skipped" not in row


def test_stops_are_named_as_scikit_learn_names_them() -> None:
    """A well-posed slot stops on its gradient at scikit-learn's optimum; a capped slot stops
    at ``max_iter`` with its gradient above the tolerance."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    n, d = 400, 6
    x = rng.standard_normal((1, n, d)).astype(np.float32)
    y = (x[0] @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n) > 0).astype(int)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(y), 2).float()[:, None]
    l2 = torch.tensor([1e-2])
    init = (torch.zeros(1, d, 1, 1), torch.zeros(1, 1, 1))
    done = lbfgs(torch.from_numpy(x), onehot, l2, init, LBFGSSettings())
    assert stop_names(done.stop.numpy()).tolist() == [["gtol"]]
    assert float(done.grad_max) <= 1e-4
    ref = LogisticRegression(C=1 / (1e-2 * n), tol=1e-4).fit(x[0], y)
    w = done.params[0][0, :, 0, 0].numpy()
    np.testing.assert_allclose(w, ref.coef_[0], atol=2e-3)
    capped = lbfgs(torch.from_numpy(x), onehot, l2, init, LBFGSSettings(max_iter=2))
    assert stop_names(capped.stop.numpy()).tolist() == [["max_iter"]]
    assert float(capped.grad_max) > 1e-4


def test_rows_carry_convergence_and_never_pick_a_capped_penalty(planted_rows) -> None:
    """With a budget too small for the weak penalties, every row says how its solve ended and
    none took a penalty that stopped at the cap while another converged."""
    rows = planted_rows(["probing.solver=lbfgs", "probing.max_iter=8"])
    for row in rows:
        assert row["lbfgs_stop"] in ("gtol", "ftol", "line_search", "max_iter")
        assert row["converged"] == (row["lbfgs_stop"] in ("gtol", "ftol"))
        assert row["lbfgs_iters"] <= 8
    assert all(row["converged"] for row in rows)  # strong penalties converge within 8
    full = {r["probe"]: r for r in planted_rows(["probing.solver=lbfgs"])}
    assert all(r["converged"] and r["lbfgs_iters"] < 10_000 for r in full.values())
    assert rows[2]["test_acc"] == pytest.approx(full[rows[2]["probe"]]["test_acc"], abs=0.05)
