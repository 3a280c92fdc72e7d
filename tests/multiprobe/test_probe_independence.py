"""Fused probes are independent: per-probe plateau stopping, L-BFGS slots (issue 10)."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from probes import AllProbesPlateau, MultiProbe
from probes.families import MLPProbe
from probes.full_batch import LBFGSSettings, lbfgs, loss_and_grad


@pytest.mark.parametrize(
    "family", [{}, {"family": MLPProbe, "hidden_dim": 5, "dropout": 0.3}], ids=["linear", "mlp"]
)
def test_plateau_is_per_probe_and_stopped_probes_freeze(
    make_loader, make_trainer, planted, family
) -> None:
    """With per-probe plateau stopping, each probe of a fused run ends exactly where it ends
    when trained alone (same seed, same name, same batches; MLP dropout masks drawn per
    probe), weights within 1e-5."""
    x, y = planted(400, 3, 6, k=1, margin=1.5)
    x[:, 2, 0] += 0.5 * y.float()  # a weak signal: this probe keeps improving longer
    names = ["a", "b", "c"]
    kw = dict(in_dim=6, num_classes=2, lr=3e-3, seed=7, **family)

    def fit(model: MultiProbe, cols: list[int]) -> MultiProbe:
        trainer = make_trainer(max_epochs=15, callbacks=[AllProbesPlateau(patience=2)])
        xs = x[:, cols]
        pl.seed_everything(0)
        trainer.fit(model, make_loader(xs[:320], y[:320], 32), make_loader(xs[320:], y[320:], 40))
        return model

    fused = fit(MultiProbe(3, probe_names=names, **kw), [0, 1, 2])
    assert bool(fused.stopped.all())
    assert len(set(fused.best_epoch.tolist())) > 1  # probes really stopped at different epochs
    for k, name in enumerate(names):
        alone = fit(MultiProbe(1, probe_names=[name], **kw), [k])
        assert alone.best_epoch[0] == fused.best_epoch[k]
        assert alone.best_val_acc[0] == fused.best_val_acc[k]
        for p, pf in zip(alone.parameters(), fused.parameters(), strict=True):
            torch.testing.assert_close(p[0], pf[k], atol=1e-5, rtol=0)


def test_lbfgs_matches_scikit_learn_and_slots_are_independent() -> None:
    """Each slot reaches scikit-learn's optimum (C = 1 / (l2 n)); solving a slot alone gives
    the weights it gets among others."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n, d, c = 300, 5, 3
    x = rng.standard_normal((2, n, d)).astype(np.float32)
    y = (x[0, :, 0] + 0.7 * rng.standard_normal(n) > 0).astype(int) + (x[0, :, 1] > 1)
    l2 = torch.tensor([1e-3, 1e-2, 1e-1])
    onehot = torch.nn.functional.one_hot(torch.from_numpy(y), c).float()
    onehot = onehot[:, None].expand(n, 3, c).contiguous()
    init = (torch.zeros(2, d, 3, c), torch.zeros(2, 3, c))
    settings = LBFGSSettings(gtol=1e-6, max_iter=1000)
    (w, b), iters, *_ = lbfgs(torch.from_numpy(x), onehot, l2, init, settings)
    assert int(iters.max()) < 1000
    for s, pen in enumerate(l2.tolist()):
        ref = LogisticRegression(C=1 / (pen * n), tol=1e-10, max_iter=10_000).fit(x[0], y)
        # multinomial logits are defined up to a shift per row: compare centred weights
        ours = w[0, :, s] - w[0, :, s].mean(-1, keepdim=True)
        theirs = torch.from_numpy(ref.coef_.T).float()
        torch.testing.assert_close(ours, theirs - theirs.mean(-1, keepdim=True), atol=1e-3, rtol=0)
    # a slot solved with fewer neighbours: another matmul width, so float32 rounding (not the
    # other slots' values) may move its last step; a whole probe alone is bitwise identical
    # (tests/engine/test_independence.py)
    alone_x = torch.from_numpy(x[1:])
    (w1, b1), *_ = lbfgs(
        alone_x, onehot[:, 1:2], l2[1:2], (init[0][1:, :, 1:2], init[1][1:, 1:2]), settings
    )
    torch.testing.assert_close(w1[0, :, 0], w[1, :, 1], atol=1e-4, rtol=0)
    torch.testing.assert_close(b1[0, 0], b[1, 1], atol=1e-4, rtol=0)
    loss, _ = loss_and_grad(alone_x, onehot[:, 1:2], l2[1:2], (w1, b1))
    assert torch.isfinite(loss).all()


def test_binary_slots_are_scikit_learns_binary_logistic_regression() -> None:
    """Two classes: one free logit column per slot, the objective of scikit-learn's binary
    ``LogisticRegression`` with ``C = 1 / (l2 n)`` exactly (weights and intercept)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    n, d = 400, 6
    x = rng.standard_normal((1, n, d)).astype(np.float32)
    y = (x[0, :, 0] - 0.5 * x[0, :, 3] + rng.standard_normal(n) > 0).astype(int)
    l2 = torch.tensor([1e-3, 1e-1])
    onehot = torch.nn.functional.one_hot(torch.from_numpy(y), 2).float()[:, None].expand(n, 2, 2)
    init = (torch.zeros(1, d, 2, 1), torch.zeros(1, 2, 1))
    settings = LBFGSSettings(gtol=1e-6, max_iter=1000)
    (w, b), *_ = lbfgs(torch.from_numpy(x), onehot.contiguous(), l2, init, settings)
    for s, pen in enumerate(l2.tolist()):
        ref = LogisticRegression(C=1 / (pen * n), tol=1e-10, max_iter=10_000).fit(x[0], y)
        torch.testing.assert_close(
            w[0, :, s, 0], torch.from_numpy(ref.coef_[0]).float(), atol=1e-3, rtol=0
        )
        assert float(b[0, s, 0]) == pytest.approx(float(ref.intercept_[0]), abs=1e-3)
