"""MDL probing by online code (Voita and Titov 2020) for every probe of a view.

The training rows go in a seeded order, cut into blocks (``vlprobe.analysis.mdl``); each
block is coded by a model trained on the rows before it, chosen per probe by validation loss
among the L2 strengths ``MDL_C_GRID`` and the label prior (their ``C -> 0`` limit; not in
``probing.mdl_variant=voita``, which also codes without smoothing). Inputs are
standardised with the statistics of all training inputs: labels are what is coded, the
inputs are known to the receiver, and a prefix of a few rows gives no usable std.

Linear probes that the engine solves full-batch are solved here the same way: per block,
every probe x penalty is a slot of one batched L-BFGS call (convex, so the optimum, not an
epoch, is the model), warm-started from the previous block's solution. Other probes (MLPs)
train each block with Adam in Lightning, keeping per probe the epoch with the lowest
validation loss.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.views import FeatureView
from probes.full_batch import (
    LBFGSSettings,
    Params,
    Slot,
    initial_params,
    logits,
    probe_groups,
    probes_per_problem,
    read_standardised,
    view_dim,
)
from probes.settings import Settings
from probes.solvers.adam import Fit, fit_probes, make_datamodule
from probes.solvers.lbfgs import device_of, solve_problems
from vlprobe.analysis.mdl import (
    MDL_C_GRID,
    PRIOR_C,
    VARIANT_SMOOTHING,
    l2_strength,
    online_blocks,
    online_codelength,
    prior_bits,
    prior_codelength,
)
from vlprobe.cache.schema import SPLIT_IDS

#: a block's bits need no more than 4 digits: on the demo's 17-class relations a relative loss
#: decrease of 1e-6 (the engine's: 1e-9) changed a layer's code length by 0.01%, in half the time
MDL_GTOL, MDL_FTOL = 1e-4, 1e-6
MDL_MIN_BATCHES = 10  # optimiser steps per epoch of an Adam block fit (a fit must converge)
NO_VALIDATION = {"limit_val_batches": 0}  # BestValLoss measures the validation loss itself


def add_mdl(
    rows: list[dict[str, Any]], view: FeatureView, settings: Settings, name_prefix: str
) -> None:
    """In every row: ``mdl_codelength_bits``, ``mdl_uniform_bits``, ``mdl_compression``
    (uniform / probe), the label prior's online code ``mdl_prior_bits`` with its compression
    ``mdl_prior_compression`` (uniform / prior: where a representation without information
    lies) and ``mdl_compression_over_prior`` (prior / probe), ``mdl_block_C`` (per block the
    chosen ``C``; ``PRIOR_C`` = 0 for the label prior) and ``mdl_variant``."""
    variant = settings.probing.mdl_variant
    train = view.rows(SPLIT_IDS["train"])
    order, edges = online_blocks(train, settings.seed, settings.probing.mdl_fractions)
    val = view.rows(SPLIT_IDS["val"])
    if val.size == 0:
        raise ValueError(
            "probing.mdl=true chooses each block's penalty on validation rows, and this view "
            "has none: use a cache with a val split or run without probing.mdl"
        )
    if settings.solver_for(view) == "lbfgs":
        bits, chosen = _blocks_full_batch(view, settings, order, edges, val)
    else:
        bits, chosen = _blocks_adam(view, settings, order, edges, name_prefix)
    smoothing = VARIANT_SMOOTHING[variant]
    prior = prior_codelength(view.labels[order], edges, view.num_classes, smoothing)
    for k, row in enumerate(rows):
        code = online_codelength(edges, bits[k].tolist(), edges[0], view.num_classes)
        row["mdl_variant"] = variant
        row["mdl_codelength_bits"] = code["online_codelength"]
        row["mdl_uniform_bits"] = code["uniform_codelength"]
        row["mdl_compression"] = code["compression"]
        row["mdl_prior_bits"] = prior
        row["mdl_prior_compression"] = code["uniform_codelength"] / prior
        row["mdl_compression_over_prior"] = prior / code["online_codelength"]
        row["mdl_block_C"] = [float(c) for c in chosen[k]]


def candidates(variant: str) -> list[float]:
    """The ``C`` of each block's candidates, strongest penalty first: the label prior
    (``PRIOR_C``) and the grid, or the grid alone in the ``voita`` variant."""
    grid = sorted(MDL_C_GRID)
    return grid if variant == "voita" else [PRIOR_C, *grid]


def pick(val_bits: np.ndarray, block_bits: np.ndarray, cs: list[float]) -> tuple[Any, Any]:
    """Per probe the candidate with the lowest validation bits: (P,) block bits and its C.

    ``val_bits`` and ``block_bits`` are (P, K) over candidates ``cs`` ordered strongest
    penalty first, so a tie goes to the simpler model."""
    best = np.argmin(val_bits, axis=1)
    rows = np.arange(len(best))
    return block_bits[rows, best], np.asarray(cs)[best]


def code_bits(z: Tensor, y: Tensor, smoothing: float) -> Tensor:
    """``-log2`` of the coded probability ``(1 - s) softmax(z) + s / C`` of labels ``y`` under
    logits ``z`` (..., C), in log space: no ``inf`` where ``s = 0`` and a softmax underflows."""
    z = z.double()
    logp = torch.log_softmax(z, -1).gather(-1, y.unsqueeze(-1).expand(*z.shape[:-1], 1))
    if smoothing > 0:
        uniform = torch.full_like(logp, math.log(smoothing / z.shape[-1]))
        logp = torch.logaddexp(logp + math.log1p(-smoothing), uniform)
    return -logp.squeeze(-1) / math.log(2)


# ------------------------------------------------------------------ full-batch L-BFGS


def _blocks_full_batch(
    view: FeatureView,
    settings: Settings,
    order: np.ndarray,
    edges: list[int],
    val: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(P, blocks - 1) bits of every later block and the chosen C, probes solved in groups
    whose features fit the memory budget, on the configured Trainer's device."""
    device = device_of(settings)
    classes = view.num_classes
    train = np.sort(order)
    where = torch.from_numpy(np.searchsorted(train, order)).to(device)  # coding order
    y = torch.from_numpy(view.labels[order]).to(device)
    y_val = torch.from_numpy(view.labels[val]).to(device)
    dim = view_dim(view)
    variant = settings.probing.mdl_variant
    smoothing, cs, grid = VARIANT_SMOOTHING[variant], candidates(variant), sorted(MDL_C_GRID)
    slots = [Slot(0, settings.seed, "mdl", c) for c in grid]
    lbfgs = LBFGSSettings(max_iter=settings.probing.max_iter, gtol=MDL_GTOL, ftol=MDL_FTOL)
    num_probes = len(view.probe_names)
    bits = np.zeros((num_probes, len(edges) - 1))
    chosen = np.zeros((num_probes, len(edges) - 1))
    per_probe = (train.size + val.size) * dim * 4
    # probes per solve from the whole training set, not the block: a probe wide enough to be
    # solved alone is alone in every block, so its code never depends on the probes beside it
    step = probes_per_problem(train.size, dim)
    for group in probe_groups(num_probes, per_probe, settings.memory_budget()):
        split_rows = {"train": train, "val": val, "test": val[:0]}
        x, *_ = read_standardised(view, split_rows, group, device)
        x["train"] = x_train = x["train"][:, where]  # the sorted copy goes
        names = [view.probe_names[k] for k in group]
        params = tuple(t.to(device) for t in initial_params(names, slots, dim, classes))
        for b, (lo, hi) in enumerate(pairwise(edges)):
            l2 = torch.tensor([l2_strength(c, lo) for c in grid], device=device)
            target = (y[:lo], l2, classes)
            params = _solve(settings, x_train[:, :lo], target, params, lbfgs, step)
            val_bits = _bits(x["val"], y_val, params, classes, smoothing)
            block_bits = _bits(x_train[:, lo:hi], y[lo:hi], params, classes, smoothing)
            if cs[0] == PRIOR_C:  # the prior's bits as the first candidate
                seen, coded = view.labels[order[:lo]], view.labels[order[lo:hi]]
                prior = [prior_bits(seen, part, classes) for part in (view.labels[val], coded)]
                val_bits, block_bits = (
                    np.column_stack([np.full(len(a), p), a])
                    for a, p in zip((val_bits, block_bits), prior, strict=True)
                )
            bits[group, b], chosen[group, b] = pick(val_bits, block_bits, cs)
        del x, x_train
    return bits, chosen


def _solve(
    settings: Settings,
    x: Tensor,
    target: tuple[Tensor, Tensor, int],
    init: Params,
    lbfgs: LBFGSSettings,
    step: int,
) -> Params:
    """Every probe x penalty of ``x`` (G, n, D) solved (``target``: labels, penalties,
    classes), ``step`` probes per problem, in one fit of the full-batch solver."""
    y, l2, classes = target
    onehot = F.one_hot(y, classes).float()[:, None, :].expand(-1, l2.numel(), -1).contiguous()
    problems = [
        # a contiguous prefix: bmm would copy a strided one in every iteration
        (x[a : a + step].contiguous(), onehot, l2, (init[0][a : a + step], init[1][a : a + step]))
        for a in range(0, x.shape[0], step)
    ]
    parts = solve_problems(settings, problems, lbfgs)
    return torch.cat([p[0][0] for p in parts]), torch.cat([p[0][1] for p in parts])


def _bits(x: Tensor, y: Tensor, params: Params, classes: int, smoothing: float) -> np.ndarray:
    """(G, S) summed coded bits of labels ``y`` (n,) of rows ``x`` (G, n, D) per slot."""
    return code_bits(logits(x, params, classes), y[None, :, None], smoothing).sum(1).cpu().numpy()


# ------------------------------------------------------------------ Adam in Lightning


def _blocks_adam(
    view: FeatureView,
    settings: Settings,
    order: np.ndarray,
    edges: list[int],
    name_prefix: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(P, blocks - 1) bits and chosen C: per block and C one fused MultiProbe fit whose
    epoch is picked per probe by validation loss (``BestValLoss``)."""
    full = make_datamodule(view, settings, rows={"train": order})
    stats = full.input_stats()
    names = [f"mdl/{name_prefix}/{n}" for n in view.probe_names]
    val_labels = view.labels[view.rows(SPLIT_IDS["val"])]
    variant = settings.probing.mdl_variant
    smoothing, cs = VARIANT_SMOOTHING[variant], candidates(variant)
    bits = np.zeros((len(names), len(edges) - 1))
    chosen = np.zeros((len(names), len(edges) - 1))
    for b, (lo, hi) in enumerate(pairwise(edges)):
        # at least MDL_MIN_BATCHES optimiser steps per epoch, however small the prefix
        batch = max(1, min(full.batch_size, lo // MDL_MIN_BATCHES))
        dm = make_datamodule(view, settings, {"train": order[:lo], "test": order[lo:hi]}, batch)
        seen, coded = view.labels[order[:lo]], view.labels[order[lo:hi]]
        prior = [prior_bits(seen, part, view.num_classes) for part in (val_labels, coded)]
        # the prior's bits as the first candidate, where it is one
        val_bits, block_bits = [np.full((len(names), int(cs[0] == PRIOR_C)), v) for v in prior]
        for c in (c for c in cs if c != PRIOR_C):
            select = BestValLoss(l2_strength(c, lo), smoothing)
            fit = Fit(
                names,
                settings.seed,
                input_stats=stats,
                test=False,
                callbacks=[select],
                trainer_kwargs=NO_VALIDATION,
            )
            model = fit_probes(view, dm, settings, fit)
            select.restore(model)
            val_bits = np.column_stack([val_bits, select.best.numpy()])
            block_bits = np.column_stack(
                [block_bits, nll_bits(model, dm.full_test_dataloader(), smoothing).numpy()]
            )
        bits[:, b], chosen[:, b] = pick(val_bits, block_bits, cs)
    return bits, chosen


@torch.no_grad()
def nll_bits(model: pl.LightningModule, batches: Any, smoothing: float) -> Tensor:
    """(P,) summed coded bits ``-log2 p(y | x)`` of every probe with its current parameters
    (``smoothing`` of the mass uniform)."""
    was_training = model.training
    model.eval()
    total = None
    for batch in batches:
        out = model(batch["x"].to(model.device))
        part = code_bits(out, batch["y"].to(model.device)[:, None], smoothing).sum(0)
        total = part if total is None else total + part
    model.train(was_training)
    return total.cpu() if total is not None else torch.zeros(0, dtype=torch.float64)


class BestValLoss(pl.Callback):
    """Adam block fits: an L2 penalty ``l2 / 2 ||W||^2`` on the probes' weights (added to the
    gradients; biases free), and per probe the parameters of the epoch with the lowest
    validation loss, the untrained start included (a few rows may teach nothing). Measured
    after every training epoch (the fit runs without Lightning's own validation loop); stops
    once no probe has improved for ``patience`` epochs. Validation bits are coded with
    ``smoothing`` of the mass uniform, as the blocks are."""

    def __init__(self, l2: float, smoothing: float, patience: int = 6) -> None:
        self.l2, self.smoothing, self.patience = l2, smoothing, patience
        self.best = torch.empty(0)
        self.saved: list[Tensor] = []
        self.wait = 0

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name, param in pl_module.probes.named_parameters():
            if "bias" not in name and param.grad is not None:
                param.grad.add_(param.detach(), alpha=self.l2)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.best = torch.full((len(pl_module.probe_names),), math.inf, dtype=torch.float64)
        self.saved = [p.detach().clone() for p in pl_module.parameters()]
        self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._check(trainer, pl_module):
            self.wait = 0
        else:
            self.wait += 1
            trainer.should_stop = trainer.should_stop or self.wait >= self.patience

    @torch.no_grad()
    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """Snapshot the probes whose validation loss improved; whether any did."""
        loss = nll_bits(pl_module, trainer.datamodule.val_dataloader(), self.smoothing)
        better = loss < self.best * (1 - 1e-4)
        self.best[better] = loss[better]
        for saved, param in zip(self.saved, pl_module.parameters(), strict=True):
            saved[better] = param.detach()[better]
        return bool(better.any())

    @torch.no_grad()
    def restore(self, pl_module: pl.LightningModule) -> None:
        for saved, param in zip(self.saved, pl_module.parameters(), strict=True):
            param.copy_(saved)
