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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.views import FeatureView
from probes.families import linear_init
from probes.metrics import MultiProbeConfusion, accuracy_from_confusion, macro_f1_from_confusion
from vlprobe.cache.schema import SPLIT_IDS

Params = tuple[Tensor, Tensor]  # W (G, D, S, C), b (G, S, C)


@dataclass(frozen=True)
class LBFGSSettings:
    """Stopping and memory of the solver (scikit-learn's lbfgs: gtol 1e-4, history 10)."""

    max_iter: int = 500
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


def lbfgs(
    x: Tensor, onehot: Tensor, l2: Tensor, init: Params, settings: LBFGSSettings
) -> tuple[Params, Tensor, Tensor]:
    """Minimise every slot's objective from ``init``: parameters, iterations, final loss.

    Batched L-BFGS: the two-loop recursion runs on (G, S) inner products, each slot keeps
    its own curvature pairs (a pair failing the curvature test is ignored for that slot only)
    and its own step, backtracked until its own Armijo condition holds. A slot that has
    stopped in every probe leaves the working set, so later passes over ``x`` multiply only
    the columns still moving (weak penalties take several times the iterations of strong ones).
    """
    out = (init[0].clone(), init[1].clone())
    params = (init[0].clone(), init[1].clone())
    f, grad = loss_and_grad(x, onehot, l2, params)
    out_f = f.clone()
    cols = torch.arange(f.shape[1], device=f.device)  # the slots in the working set
    active = _absmax(grad) > settings.gtol
    iters = torch.zeros_like(f, dtype=torch.long)
    gamma = 1.0 / _absmax(grad).clamp_min(1.0)  # first step as torch.optim.LBFGS: <= 1 / |g|
    memory: list[tuple[Params, Params, Tensor]] = []
    for _ in range(settings.max_iter):
        live = active.any(0)
        if not bool(live.all()):
            _store(out, out_f, cols, params, f)
            if not bool(live.any()):
                break
            keep = live.nonzero().squeeze(1)
            params, grad = _take(params, keep), _take(grad, keep)
            memory = [(_take(s_i, keep), _take(y_i, keep), r[:, keep]) for s_i, y_i, r in memory]
            f, active, gamma = f[:, keep], active[:, keep], gamma[:, keep]
            onehot, l2, cols = onehot[:, keep], l2[keep], cols[keep]
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
            tf, tg = loss_and_grad(x, onehot, l2, trial)
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
        gamma = torch.where(good, sy / _dot(y_k, y_k).clamp_min(1e-20), gamma)
        memory.append((s_k, y_k, rho))
        if len(memory) > settings.history:
            memory.pop(0)
        iters[:, cols] += active.long()
        flat = (f - new_f) <= settings.ftol * torch.maximum(f.abs(), new_f.abs()).clamp_min(1.0)
        params, f, grad = new_params, new_f, new_grad
        active &= ~stuck & ~flat & (_absmax(grad) > settings.gtol)
    _store(out, out_f, cols, params, f)
    return out, iters, out_f


def _take(p: Params, cols: Tensor) -> Params:
    """The slots ``cols`` of per-slot parameters (or gradients)."""
    return p[0][:, :, cols], p[1][:, cols]


def _store(out: Params, out_f: Tensor, cols: Tensor, params: Params, f: Tensor) -> None:
    """Write the working set's parameters and losses back to their slots."""
    out[0][:, :, cols] = params[0]
    out[1][:, cols] = params[1]
    out_f[:, cols] = f


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


SPLITS = ("train", "val", "test")
READ_ROWS = 4096
#: features (floats) solved together: a few wide probes (layers) one by one, so each runs only
#: its own iterations; many narrow ones (heads) batched, so the per-call overhead amortises
SOLVE_FLOATS = 2**25


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
) -> dict[str, Tensor]:
    """(G, N, D) float32 features of each split, standardised with training statistics
    (population std as scikit-learn's ``StandardScaler``; constant features only centred).

    A run of consecutive probes (``probe_groups``) is sliced, not gathered. Statistics are
    float32 sums of ``READ_ROWS``-row blocks accumulated in float64, two passes (mean, then
    squares of the centred rows): one float64 reduction over (G, N, D) took 10x longer.
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
    n = max(1, train.shape[1])
    mean = _block_sum(train, lambda b: b).div_(n).float().unsqueeze(1)
    var = _block_sum(train, lambda b: (b - mean).square_()).div_(n).float().unsqueeze(1)
    std = var.sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    for x in out.values():
        x.sub_(mean).div_(std)
    return out


def _block_sum(x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """(G, D) float64 sum over rows of ``fn(block)``, float32 within each block."""
    total = torch.zeros(x.shape[0], x.shape[2], dtype=torch.float64, device=x.device)
    for a in range(0, x.shape[1], READ_ROWS):
        total += fn(x[:, a : a + READ_ROWS]).sum(1)
    return total


def view_dim(view: FeatureView) -> int:
    """Feature width D of a view (one row read)."""
    first = view.rows(SPLIT_IDS["train"])[:1]
    return int(view.read(first).shape[2])


def fit_view(
    view: FeatureView,
    label_sets: list[np.ndarray],
    slots: list[Slot],
    settings: LBFGSSettings,
    budget_bytes: float,
    device: torch.device,
) -> SlotMetrics:
    """Solve every slot of every probe of ``view``; rows are the task's labelled rows (every
    label set labels the same rows)."""
    rows = {s: view.rows(SPLIT_IDS[s]) for s in SPLITS}
    classes = view.num_classes
    dim = view_dim(view)
    which = [slot.labels for slot in slots]
    targets = {
        s: torch.from_numpy(np.stack([lab[rows[s]] for lab in label_sets], 1)[:, which])
        for s in SPLITS
    }
    onehot = F.one_hot(targets["train"], classes).float().to(device)  # (N, S, C)
    l2 = torch.tensor([sl.l2 for sl in slots], dtype=torch.float32, device=device)
    total = sum(r.size for r in rows.values())
    num_probes = len(view.probe_names)
    shape = (num_probes, len(slots))
    out = SlotMetrics(
        *(np.zeros(shape) for _ in range(4)), np.zeros(shape, dtype=np.int64), np.zeros(shape)
    )
    for group in probe_groups(num_probes, total * dim * 4, budget_bytes):
        x = read_standardised(view, rows, group, device)
        names = [view.probe_names[k] for k in group]
        w0, b0 = (t.to(device) for t in initial_params(names, slots, dim, classes))
        step = max(1, SOLVE_FLOATS // max(1, rows["train"].size * dim))
        solved = []
        for a in range(0, len(group), step):
            init = (w0[a : a + step], b0[a : a + step])
            part, iters, loss = lbfgs(x["train"][a : a + step], onehot, l2, init, settings)
            out.iterations[group[a : a + step]] = iters.cpu().numpy()
            out.train_loss[group[a : a + step]] = loss.cpu().numpy()
            solved.append(part)
        params = (torch.cat([p[0] for p in solved]), torch.cat([p[1] for p in solved]))
        for split, acc, f1 in (
            ("val", out.val_acc, out.val_f1),
            ("test", out.test_acc, out.test_f1),
        ):
            if rows[split].size == 0:
                acc[group] = f1[group] = np.nan
                continue
            conf = confusion(x[split], targets[split].to(device), params, classes).cpu()
            acc[group] = accuracy_from_confusion(conf).numpy()
            f1[group] = macro_f1_from_confusion(conf).numpy()
        del x
    return out
