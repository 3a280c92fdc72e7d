"""Train probes over a feature view: plan -> solver -> selection, one row per probe.

``train_view`` wires the probing core: the *plan* (``probes.plan``: label sets x penalties x
``probing.select`` combinations x seeds), a *solver* (``probes.solvers``: full-batch L-BFGS
for linear probes that fit the memory budget, else Adam; both run by the configured
Trainer), the *selection* (``probes.selection``: best candidate per probe on validation,
seed statistics, controls, intervals), what is logged (``probes.loggers``) and MDL
(``probes.mdl``) when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datamodules.views import FeatureView
from probes.loggers import log_solve
from probes.mdl import add_mdl
from probes.plan import make_plan
from probes.selection import select
from probes.settings import DEFAULT_L2, Probing, Settings
from probes.solvers import SOLVERS
from probes.weights import save_chosen_weights
from vlprobe.cache.schema import SPLIT_IDS
from vlprobe.console import progress
from vlprobe.reporting.identity import family_fields, stamp_rows

__all__ = ["DEFAULT_L2", "ProbeEngine", "Probing", "train_view"]


@dataclass
class ProbeEngine(Settings):
    """The run's settings (``probes.settings.Settings``, built once by ``run()``), and the one
    thing a task asks of them."""

    def train_view(self, view: FeatureView, name_prefix: str) -> list[dict[str, Any]]:
        """Rows for every probe of ``view``: task accuracy over seeds, controls, MDL."""
        detail = f"{len(view.probe_names)} probes, {self.solver_for(view)}, "
        detail += f"{view.rows(SPLIT_IDS['train']).size} training rows"
        with progress(f"probing {name_prefix}", detail):
            return train_view(view, self, name_prefix)


def train_view(view: FeatureView, settings: Settings, prefix: str) -> list[dict[str, Any]]:
    """Rows for every probe of ``view`` (named ``<prefix>/<probe>``)."""
    plan = make_plan(view, settings, prefix)
    solved = SOLVERS[plan.solver](view, plan, settings)
    rows, choices = select(view, plan, solved)
    if settings.probing.save_weights and settings.weights_dir is not None:
        save_chosen_weights(settings.weights_dir, view, plan, solved, choices)
    stamp_rows(rows, view.probe_ids, family_fields(settings.probe))
    log_solve(settings.loggers, view, plan, solved, choices)
    if settings.probing.mdl:
        add_mdl(rows, view, settings, prefix)
    return rows
