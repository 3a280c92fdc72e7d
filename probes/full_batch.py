"""Linear probes solved to the optimum, many at once: batched full-batch L-BFGS.

The reference recipes (scikit-learn ``LogisticRegression``, SentEval) minimise, per probe,
the mean cross-entropy plus an L2 penalty ``l2 / 2 * ||W||^2`` (bias not penalised; scikit-
learn's ``C`` is ``1 / (l2 * n_train)``) and pick the penalty on validation. Here every
*slot* (probe x label set x seed x penalty) is such a problem, and all slots of a group of
probes share one pass over the standardised training matrix per iteration: the weights of
probe ``k`` are ``(D, S, C)``, so its ``S`` slots are ``S * C`` output columns of one
matmul. Each slot has its own L-BFGS history, step size (Armijo backtracking on its own
loss) and stopping test; a converged slot takes no further step, so a slot's result does not
depend on which other slots share the pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.cache_datamodule import training_stats
from datamodules.views import FeatureView
from probes.families import linear_init
from probes.metrics import MultiProbeConfusion
from vlprobe.cache.schema import SPLIT_IDS

Params = tuple[Tensor, Tensor]  # W (G, D, S, C), b (G, S, C)
#: why a slot stopped (``Solution.stop``): scikit-learn's lbfgs calls the first two converged;
#: a failed line search (no decrease left at float32 resolution) and the iteration cap it warns of
STOPS = ("gtol", "ftol", "line_search", "max_iter")
GTOL, FTOL, LINE_SEARCH, MAX_ITER = range(1, 5)  # 1 + index in STOPS; 0: still running


class Solution(NamedTuple):
    """Every slot's solution: parameters, iterations, final penalised loss (G, S), why it
    stopped (G, S: 1 + index in ``STOPS``) and its final max |gradient| (G, S)."""

    params: Params
    iterations: Tensor
    loss: Tensor
    stop: Tensor
    grad_max: Tensor


def stop_names(stop: np.ndarray) -> np.ndarray:
    """``STOPS`` names of ``Solution.stop`` codes."""
    return np.asarray(STOPS, dtype=object)[np.asarray(stop) - 1]


@dataclass(frozen=True)
class LBFGSSettings:
    """Stopping and memory of the solver (scikit-learn's lbfgs: gtol 1e-4, history 10).

    A slot stops when its max |gradient| is at most ``gtol`` or its relative loss decrease at
    most ``ftol`` (both: converged), when no step along its direction decreases the loss
    (line search) or at ``max_iter`` (both: not converged, and never chosen silently)."""

    max_iter: int = 10_000
    gtol: float = 1e-4  # max |gradient| of the mean loss, per slot
    ftol: float = 1e-9  # or a relative loss decrease below this (float32 features)
    history: int = 10
    max_line_search: int = 30


def _dot(a: Params, b: Params) -> Tensor:
    """(G, S) inner products of per-slot parameter vectors."""
    return (a[0] * b[0]).sum((1, 3)) + (a[1] * b[1]).sum(-1)


def _axpy(t: Tensor, d: Params, x: Params) -> Params:
    """``x + t * d`` with a (G, S) step per slot."""
    return (x[0] + t[:, None, :, None] * d[0], x[1] + t[..., None] * d[1])


def _scale(t: Tensor, d: Params) -> Params:
    return (t[:, None, :, None] * d[0], t[..., None] * d[1])


def _absmax(d: Params) -> Tensor:
    return torch.maximum(d[0].abs().amax((1, 3)), d[1].abs().amax(-1))


def logits(x: Tensor, params: Params, classes: int) -> Tensor:
    """(G, N, D) features -> (G, N, S, classes) logits of every slot.

    Parameters with one column fewer than ``classes`` hold the logits of classes 1...
    against a class 0 fixed at zero: for two classes, scikit-learn's binary logistic
    regression (one weight vector, the same penalty), at half the work of two columns.
    """
    w, b = params
    g, d, s, c = w.shape
    z = torch.bmm(x, w.reshape(g, d, s * c)).view(g, -1, s, c) + b.unsqueeze(1)
    if c == classes:
        return z
    return torch.cat([z.new_zeros(*z.shape[:-1], classes - c), z], dim=-1)


def loss_and_grad(x: Tensor, onehot: Tensor, l2: Tensor, params: Params) -> tuple[Tensor, Params]:
    """Per-slot mean cross-entropy + ``l2 / 2 ||W||^2`` and its exact gradient.

    ``onehot`` is (N, S, C): slot ``s``'s target of every training row. The gradient is
    written out (softmax minus one-hot), one matmul with the transposed features.
    """
    w, b = params
    g, d, s, c = w.shape
    n = x.shape[1]
    z = logits(x, params, onehot.shape[-1])
    logp = F.log_softmax(z, dim=-1)
    # float64 sums: near the optimum a step changes the loss by less than float32 resolves
    fit = (logp * onehot).sum((1, 3), dtype=torch.float64) / n
    loss = 0.5 * l2.double() * w.pow(2).sum((1, 3), dtype=torch.float64) - fit
    resid = (logp.exp_() - onehot).div_(n)[..., -c:]  # (G, N, S, c): the free logits
    # (SC, N) @ (N, D) reads the features in their own layout: x^T @ resid took 6x longer
    resid_t = resid.view(g, n, s * c).transpose(1, 2).contiguous()
    grad_w = torch.bmm(resid_t, x).transpose(1, 2).reshape(g, d, s, c)
    grad_w += l2[None, None, :, None] * w
    return loss, (grad_w, resid.sum(1))


def lbfgs(x: Tensor, onehot: Tensor, l2: Tensor, init: Params, settings: LBFGSSettings) -> Solution:
    """Minimise every slot's objective from ``init`` (``LBFGSRun`` stepped to the end; the
    Trainer-run solver steps it once per training step)."""
    run = LBFGSRun(x, onehot, l2, init, settings)
    for _ in range(settings.max_iter):
        if not run.step():
            break
    return run.result()


class LBFGSRun:
    """Batched L-BFGS, one iteration per :meth:`step`.

    The two-loop recursion runs on (G, S) inner products, each slot keeps its own curvature
    pairs (a pair failing the curvature test is ignored for that slot only) and its own step,
    backtracked until its own Armijo condition holds. A slot that has stopped in every probe
    leaves the working set, so later passes over ``x`` multiply only the columns still moving
    (weak penalties take several times the iterations of strong ones).
    """

    def __init__(
        self, x: Tensor, onehot: Tensor, l2: Tensor, init: Params, settings: LBFGSSettings
    ) -> None:
        self.x, self.onehot, self.l2, self.settings = x, onehot, l2, settings
        self.out = (init[0].clone(), init[1].clone())
        self.params = (init[0].clone(), init[1].clone())
        self.f, self.grad = loss_and_grad(x, onehot, l2, self.params)
        self.out_f = self.f.clone()
        self.cols = torch.arange(self.f.shape[1], device=self.f.device)  # the working set
        self.active = _absmax(self.grad) > settings.gtol
        self.stop = torch.where(self.active, 0, GTOL).to(device=self.f.device)
        self.grad_max = _absmax(self.grad)
        self.iters = torch.zeros_like(self.f, dtype=torch.long)
        # first step as torch.optim.LBFGS: <= 1 / |g|
        self.gamma = 1.0 / _absmax(self.grad).clamp_min(1.0)
        self.memory: list[tuple[Params, Params, Tensor]] = []
        self.done = False

    def step(self) -> bool:
        """One iteration of every live slot; False (and nothing done) once none is live."""
        if self.done:
            return False
        live = self.active.any(0)
        if not bool(live.all()):
            self._store()
            if not bool(live.any()):
                self.done = True
                return False
            self._shrink(live.nonzero().squeeze(1))
        self._iterate()
        return True

    @property
    def finished(self) -> bool:
        """Whether every slot has stopped (the next :meth:`step` would do nothing)."""
        return self.done or not bool(self.active.any())

    def _shrink(self, keep: Tensor) -> None:
        """Only the slots ``keep`` stay in the working set."""
        self.params, self.grad = _take(self.params, keep), _take(self.grad, keep)
        self.memory = [
            (_take(s_i, keep), _take(y_i, keep), r[:, keep]) for s_i, y_i, r in self.memory
        ]
        self.f, self.active, self.gamma = self.f[:, keep], self.active[:, keep], self.gamma[:, keep]
        self.onehot, self.l2, self.cols = self.onehot[:, keep], self.l2[keep], self.cols[keep]

    def _iterate(self) -> None:
        settings, memory, active = self.settings, self.memory, self.active
        params, f, grad, gamma = self.params, self.f, self.grad, self.gamma
        # two-loop recursion, batched over slots
        q = grad
        alphas = []
        for s_i, y_i, rho_i in reversed(memory):
            a = rho_i * _dot(s_i, q)
            alphas.append(a)
            q = _axpy(-a, y_i, q)
        r = _scale(gamma, q)
        for (s_i, y_i, rho_i), a in zip(memory, reversed(alphas), strict=True):
            beta = rho_i * _dot(y_i, r)
            r = _axpy(a - beta, s_i, r)
        direction = _scale(-active.float(), r)  # converged slots stay where they are
        slope = _dot(grad, direction)
        uphill = active & (slope >= 0)  # numerical trouble: steepest descent for that slot
        if bool(uphill.any()):
            steep = _scale(-gamma * uphill, grad)
            keep_dir = (~uphill).float()
            direction = _axpy(torch.ones_like(gamma), steep, _scale(keep_dir, direction))
            slope = _dot(grad, direction)
        step = active.float()
        pending = active.clone()
        new_params, new_f, new_grad = params, f, grad
        for _ in range(settings.max_line_search):
            trial = _axpy(step, direction, params)
            tf, tg = loss_and_grad(self.x, self.onehot, self.l2, trial)
            ok = pending & (tf <= f + 1e-4 * step * slope)
            if bool(ok.any()):
                new_params = _where(ok, trial, new_params)
                new_grad = _where(ok, tg, new_grad)
                new_f = torch.where(ok, tf, new_f)
                pending &= ~ok
            if not bool(pending.any()):
                break
            step = torch.where(pending, step * 0.5, step)
        stuck = pending  # no decrease along the direction: converged as far as float allows
        s_k = (new_params[0] - params[0], new_params[1] - params[1])
        y_k = (new_grad[0] - grad[0], new_grad[1] - grad[1])
        sy = _dot(s_k, y_k)
        good = active & ~stuck & (sy > 1e-10)
        rho = torch.where(good, 1.0 / sy.clamp_min(1e-10), torch.zeros_like(sy))
        self.gamma = torch.where(good, sy / _dot(y_k, y_k).clamp_min(1e-20), gamma)
        memory.append((s_k, y_k, rho))
        if len(memory) > settings.history:
            memory.pop(0)
        self.iters[:, self.cols] += active.long()
        flat = (f - new_f) <= settings.ftol * torch.maximum(f.abs(), new_f.abs()).clamp_min(1.0)
        small = _absmax(new_grad) <= settings.gtol
        self.params, self.f, self.grad = new_params, new_f, new_grad
        self.active = active & ~stuck & ~flat & ~small
        # the first test that holds names the stop: gradient, loss decrease, line search
        why = torch.where(small, GTOL, torch.where(flat, FTOL, LINE_SEARCH))
        stop = self.stop[:, self.cols]
        self.stop[:, self.cols] = torch.where(active & ~self.active, why, stop)

    def result(self) -> Solution:
        """Every slot's solution; a slot still moving stopped at ``max_iter``."""
        self._store()
        self.stop[self.stop == 0] = MAX_ITER
        return Solution(self.out, self.iters, self.out_f, self.stop, self.grad_max)

    def _store(self) -> None:
        """Write the working set's parameters, losses and gradients back to their slots."""
        cols = self.cols
        self.out[0][:, :, cols] = self.params[0]
        self.out[1][:, cols] = self.params[1]
        self.out_f[:, cols] = self.f
        self.grad_max[:, cols] = _absmax(self.grad)


def _take(p: Params, cols: Tensor) -> Params:
    """The slots ``cols`` of per-slot parameters (or gradients)."""
    return p[0][:, :, cols], p[1][:, cols]


def _where(mask: Tensor, a: Params, b: Params) -> Params:
    return (
        torch.where(mask[:, None, :, None], a[0], b[0]),
        torch.where(mask[..., None], a[1], b[1]),
    )


def confusion(x: Tensor, targets: Tensor, params: Params, classes: int) -> Tensor:
    """(G, S, C, C) confusion of every slot on rows ``x`` (G, N, D), targets (N, S)."""
    g, _, s, _ = params[0].shape
    preds = logits(x, params, classes).argmax(-1)  # (G, N, S)
    conf = MultiProbeConfusion(g * s, classes)
    conf.update(preds.permute(1, 0, 2).reshape(-1, g * s), targets.repeat(1, g))
    return conf.compute().view(g, s, classes, classes)


@dataclass(frozen=True)
class Slot:
    """One problem per probe: which label set, the seed and name prefix of its initial
    weights (the row name is ``<prefix>/<probe>``; seed ``None``: zeros, scikit-learn's
    start), and its L2 penalty."""

    labels: int
    seed: int | None
    prefix: str
    l2: float


@dataclass
class SlotMetrics:
    """(P, S) arrays: best-penalty selection happens in the engine, over these."""

    val_acc: np.ndarray
    val_f1: np.ndarray
    test_acc: np.ndarray
    test_f1: np.ndarray
    iterations: np.ndarray
    train_loss: np.ndarray  # the penalised objective at the solution
    stop: np.ndarray  # why each slot stopped: a name of ``STOPS``
    grad_max: np.ndarray  # max |gradient| of the mean loss at the solution
    #: with ``probing.save_weights``, per probe its weights (D, S, c) and biases (S, c) on the
    #: standardised features, and their training mean and std (D,)
    weights: dict[int, tuple[Tensor, Tensor, Tensor, Tensor]] | None = None


SPLITS = ("train", "val", "test")
READ_ROWS = 4096
#: features (floats) solved together: a few wide probes (layers) one by one, so each runs only
#: its own iterations; many narrow ones (heads) batched, so the per-call overhead amortises
SOLVE_FLOATS = 2**25


#: a probe with at least this many training floats is a problem of its own: its matmuls are
#: large enough alone, and its float32 path (where a slot leaves the working set, how wide the
#: matmul is) then never depends on which other probes (``probing.layers``) share the run;
#: narrower ones (single heads: always every head of the view) are batched
OWN_PROBLEM_FLOATS = 2**18


def probes_per_problem(rows: int, dim: int) -> int:
    """How many consecutive probes of ``rows`` x ``dim`` training features one solve holds."""
    floats = rows * dim
    return 1 if floats >= OWN_PROBLEM_FLOATS else max(1, SOLVE_FLOATS // max(1, floats))


def free_logits(classes: int) -> int:
    """Logit columns a probe learns: one for two classes (binary logistic), else one each."""
    return 1 if classes == 2 else classes


def initial_params(names: list[str], slots: list[Slot], in_dim: int, classes: int) -> Params:
    """``LinearProbe``'s initial weights of each (probe, slot) from (slot seed, row name);
    for two classes the difference of its two columns (class 1 against class 0). Slots
    without a seed start at zero."""
    cols = free_logits(classes)
    w = torch.zeros(len(names), in_dim, len(slots), cols)
    b = torch.zeros(len(names), len(slots), cols)
    for k, name in enumerate(names):
        for s, slot in enumerate(slots):
            if slot.seed is None:
                continue
            wk, bk = linear_init(slot.seed, f"{slot.prefix}/{name}", in_dim, classes)
            if cols < classes:
                wk, bk = wk[:, 1:] - wk[:, :1], bk[1:] - bk[:1]
            w[k, :, s], b[k, s] = wk, bk
    return w, b


def probe_groups(num_probes: int, bytes_per_probe: int, budget_bytes: float) -> list[list[int]]:
    """Consecutive probes whose float32 features fit the memory budget together."""
    size = max(1, int(budget_bytes // max(1, bytes_per_probe)))
    return [list(range(a, min(a + size, num_probes))) for a in range(0, num_probes, size)]


def read_standardised(
    view: FeatureView, rows: dict[str, np.ndarray], group: list[int], device: torch.device
) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """(G, N, D) float32 features of each split, standardised with training statistics
    (``datamodules.cache_datamodule.training_stats`` over ``READ_ROWS``-row blocks).

    A run of consecutive probes (``probe_groups``) is sliced, not gathered.
    """
    consecutive = group == list(range(group[0], group[-1] + 1))
    probes = slice(group[0], group[-1] + 1) if consecutive else group
    out = {}
    for split in SPLITS:
        r = rows[split]
        x = torch.empty(len(group), r.size, view_dim(view), dtype=torch.float32)
        for a in range(0, r.size, READ_ROWS):
            block = torch.from_numpy(view.read(r[a : a + READ_ROWS])[:, probes])
            for k in range(len(group)):  # one contiguous (rows, D) copy per probe
                x[k, a : a + block.shape[0]].copy_(block[:, k])
        out[split] = x.to(device)
    train = out["train"]

    def blocks() -> Iterator[Tensor]:
        return (train[:, a : a + READ_ROWS] for a in range(0, train.shape[1], READ_ROWS))

    mean, std = training_stats(blocks, train.shape[1], axis=1)
    for x in out.values():
        x.sub_(mean.unsqueeze(1)).div_(std.unsqueeze(1))
    return out, mean, std


def view_dim(view: FeatureView) -> int:
    """Feature width D of a view (one row read)."""
    first = view.rows(SPLIT_IDS["train"])[:1]
    return int(view.read(first).shape[2])
