"""Solvers behind one interface: ``solve(view, plan, settings) -> Solved``.

``lbfgs``: linear probes by batched full-batch L-BFGS (``probes.solvers.lbfgs``); ``sgd``:
any probe family by Adam over batches (``probes.solvers.adam``). Both are LightningModules
run by the configured Trainer; both return, per (label set, seed), every candidate's row per
probe, and ``probes.selection`` picks among them.
"""

from __future__ import annotations

from collections.abc import Callable

from datamodules.views import FeatureView
from probes.plan import Plan
from probes.settings import Settings
from probes.solvers.adam import solve_adam
from probes.solvers.base import Candidates, Solved
from probes.solvers.lbfgs import solve_lbfgs

Solver = Callable[[FeatureView, Plan, Settings], Solved]
SOLVERS: dict[str, Solver] = {"lbfgs": solve_lbfgs, "sgd": solve_adam}

__all__ = ["SOLVERS", "Candidates", "Solved", "Solver"]
