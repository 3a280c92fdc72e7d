"""What a run probes and with what: ``Probing`` (``configs/probing/``) and the constructors
``run()`` builds once from the config (``Settings``).

Solvers, selection and MDL read these settings; the engine (``probes.engine``) adds the one
verb, ``train_view``, so nothing below the engine imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import get_class

from datamodules.cache_datamodule import (
    DEFAULT_MEMORY_BUDGET_MB,
    CacheProbeDataModule,
    fits_memory,
)
from datamodules.views import FeatureView
from probes.families import LinearProbe
from probes.full_batch import view_dim
from vlprobe.analysis.mdl import MDL_VARIANTS
from vlprobe.cache.schema import SPLIT_IDS
from vlprobe.config import config_default

SOLVERS = ("auto", "lbfgs", "sgd")
#: SentEval's l2reg grid (its classifier's Adam weight decay = our per-example L2 penalty)
#: and four decades stronger: on the 20k-pair bench the best penalty sat at 0.1-10, on the
#: demo at the old top, 0.1. In scikit-learn's terms (C = 1 / (l2 n_train)) the top reaches
#: LogisticRegressionCV's strongest C, 1e-4, for n_train >= 100. Strong penalties converge in
#: a few iterations and leave the working set (``full_batch.LBFGSRun``): no extra passes.
DEFAULT_L2 = tuple(config_default("probing", "l2_grid"))  # configs/probing/default.yaml


@dataclass(frozen=True)
class Probing:
    """What to probe, how linear probes are solved, and which comparisons to add
    (``configs/probing/``)."""

    layers: list[int] | None = None
    control: bool = False
    shuffled_control: bool = False
    mdl: bool = False
    mdl_fractions: list[float] | None = None
    # smoothed: the label prior is a block candidate, codes keep 0.1% uniform; voita: the
    # plain online code (vlprobe.analysis.mdl.VARIANT_SMOOTHING)
    mdl_variant: str = "smoothed"
    # auto: full-batch L-BFGS for linear probes whose features fit the memory budget
    solver: str = "auto"
    l2_grid: Sequence[float] = DEFAULT_L2
    max_iter: int = int(config_default("probing", "max_iter"))
    # probe arguments to select on validation per probe (Adam path), e.g.
    # {hidden_dim: [64, 256], dropout: [0.0, 0.3], weight_decay: [0.0, 0.01]}: every
    # combination is trained in one loop (every seed); each probe keeps its best
    select: Mapping[str, Sequence[Any]] | None = None
    # the chosen probes' weights (either solver) into ``Settings.weights_dir`` (``probes.weights``)
    save_weights: bool = False

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"probing.solver must be one of {', '.join(SOLVERS)}: {self.solver!r}")
        if self.mdl_variant not in MDL_VARIANTS:
            raise ValueError(
                f"probing.mdl_variant must be one of {', '.join(MDL_VARIANTS)}: "
                f"{self.mdl_variant!r}"
            )
        if not self.l2_grid or min(self.l2_grid) < 0:
            raise ValueError(f"probing.l2_grid needs penalties >= 0, got {self.l2_grid}")


@dataclass
class Settings:
    """Everything a solver needs, built once by ``run()`` from the config.

    ``probe``, ``datamodule`` and ``trainer`` are partially-applied constructors: each seed,
    control and MDL block gets a fresh probe, datamodule and trainer, and ``callbacks`` are
    constructors too, so no stopping state leaks from one fit into the next.
    """

    probe: Callable[..., pl.LightningModule]
    datamodule: Callable[..., CacheProbeDataModule]
    trainer: Callable[..., pl.Trainer]
    callbacks: list[Callable[[], pl.Callback]] = field(default_factory=list)
    loggers: list[Any] = field(default_factory=list)
    probing: Probing = field(default_factory=Probing)
    seed: int = 0
    seeds: list[int] | None = None  # several seeds over the same data (None: ``seed`` only)
    weights_dir: Path | None = None  # where ``probing.save_weights`` writes (the run's folder)

    def seed_list(self) -> list[int]:
        return [int(s) for s in (self.seeds or [self.seed])]

    def solver_for(self, view: FeatureView) -> str:
        """``lbfgs`` or ``sgd`` for this view (``auto``: L-BFGS for linear probes whose float32
        features, all splits, fit ``loader.memory_budget_mb`` one probe at a time)."""
        solver = self.probing.solver
        linear = self.linear()
        if solver == "lbfgs" and not linear:
            raise ValueError("probing.solver=lbfgs solves linear probes only: use probe=linear")
        if solver != "auto":
            return solver
        rows = sum(view.rows(i).size for i in SPLIT_IDS.values())
        fits = fits_memory(rows * view_dim(view) * 4, self.memory_budget_mb())
        return "lbfgs" if linear and fits else "sgd"

    def linear(self) -> bool:
        """Whether the configured probes are linear (``probes.families.LinearProbe``)."""
        family = getattr(self.probe, "keywords", {}).get("family", LinearProbe)
        family = get_class(family) if isinstance(family, str) else family
        return isinstance(family, type) and issubclass(family, LinearProbe)

    def memory_budget_mb(self) -> float:
        """``loader.memory_budget_mb``, as the datamodule reads it."""
        keywords = getattr(self.datamodule, "keywords", {})
        return float(keywords.get("memory_budget_mb", DEFAULT_MEMORY_BUDGET_MB))

    def memory_budget(self) -> float:
        """The budget in bytes (the full-batch solver's probe groups)."""
        return self.memory_budget_mb() * 2**20
