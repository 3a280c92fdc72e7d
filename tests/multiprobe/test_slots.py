"""Slots: probes that share an input column but learn other labels, penalties, decay and
dropout, fused on the probe axis of one MultiProbe (issue 10, the Adam path in one pass)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from probes import AllProbesPlateau, MultiProbe
from probes.families import MLPProbe


def test_each_slot_equals_its_probe_trained_alone(make_loader, make_trainer, planted) -> None:
    """Slots reading two columns under two label sets, each with its own L2 penalty, weight
    decay and dropout, end where each ends alone (plateau stopping on), weights within 1e-5."""
    x, y = planted(400, 2, 6, k=1, margin=1.5)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(3))]
    labels = torch.stack([y, shuffled], 1)  # (N, L): the task and a shuffled control
    slots = [  # (input column, label column, l2, weight decay, dropout)
        (0, 0, 0.0, 0.0, 0.0),
        (1, 0, 0.1, 0.0, 0.3),
        (1, 0, 0.0, 0.05, 0.1),
        (1, 1, 1e-3, 0.0, 0.0),
    ]
    kw = dict(in_dim=6, num_classes=2, lr=3e-3, seed=7, family=MLPProbe, hidden_dim=5)

    def fit(model: MultiProbe, xs: torch.Tensor, ys: torch.Tensor) -> MultiProbe:
        trainer = make_trainer(max_epochs=12, callbacks=[AllProbesPlateau(patience=2)])
        pl.seed_everything(0)
        trainer.fit(model, make_loader(xs[:320], ys[:320], 32), make_loader(xs[320:], ys[320:]))
        trainer.test(model, make_loader(xs[320:], ys[320:]), verbose=False)
        return model

    names = [f"s{i}" for i in range(len(slots))]
    fused = fit(
        MultiProbe(
            len(slots),
            probe_names=names,
            init_names=["a", "b", "b", "b"],
            slot_inputs=[s[0] for s in slots],
            label_columns=[s[1] for s in slots],
            l2=[s[2] for s in slots],
            weight_decay=[s[3] for s in slots],
            dropout=[s[4] for s in slots],
            **kw,
        ),
        x,
        labels,
    )
    assert len(set(fused.best_epoch.tolist())) > 1  # the slots really trained differently
    for k, (col, lab, l2, wd, p) in enumerate(slots):
        init = ["ab"[min(k, 1)]]
        alone = MultiProbe(1, probe_names=[names[k]], init_names=init, l2=l2, **kw,
                           weight_decay=wd, dropout=p)  # fmt: skip
        alone = fit(alone, x[:, [col]], labels[:, lab])
        assert alone.best_epoch[0] == fused.best_epoch[k], k
        assert alone.test_acc[0] == fused.test_acc[k], k
        for p_alone, p_fused in zip(alone.parameters(), fused.parameters(), strict=True):
            torch.testing.assert_close(p_alone[0], p_fused[k], atol=1e-5, rtol=0)


def test_l2_adds_the_penalty_gradient_to_weights_only() -> None:
    """Slot ``k``'s gradient is that of its mean loss + ``l2[k] / 2 ||W||^2`` (bias free), the
    objective of the full-batch solver, so a penalty means the same on both paths."""
    torch.manual_seed(0)
    model = MultiProbe(2, 4, 3, l2=[0.0, 0.5], seed=1)
    x, y = torch.randn(16, 2, 4), torch.randint(0, 3, (16,))
    model._loss(model(x), y).backward()
    model.on_after_backward()
    ref = MultiProbe(2, 4, 3, seed=1)
    w, b = ref.probes.weights[0], ref.probes.biases[0]
    total = ref._loss(ref(x), y) + 0.25 * w[1].pow(2).sum()
    total.backward()
    torch.testing.assert_close(model.probes.weights[0].grad, w.grad)
    torch.testing.assert_close(model.probes.biases[0].grad, b.grad)


def test_weight_decay_per_slot_is_adamw() -> None:
    """Per-slot decay reproduces ``torch.optim.AdamW(weight_decay=wd)`` slot by slot."""
    torch.manual_seed(0)
    decays = [0.0, 0.3]
    model = MultiProbe(2, 4, 3, lr=0.05, weight_decay=decays, seed=1)
    refs = [MultiProbe(1, 4, 3, lr=0.05, seed=1, probe_names=[f"p{k:02d}"]) for k in range(2)]
    opts = [
        torch.optim.AdamW(r.parameters(), lr=0.05, weight_decay=wd)
        for r, wd in zip(refs, decays, strict=True)
    ]
    opt = model.configure_optimizers()
    for _ in range(5):
        x, y = torch.randn(16, 2, 4), torch.randint(0, 3, (16,))
        opt.zero_grad()
        model._loss(model(x), y).backward()
        model.on_before_optimizer_step(opt)
        opt.step()
        for k, (ref, ref_opt) in enumerate(zip(refs, opts, strict=True)):
            ref_opt.zero_grad()
            ref._loss(ref(x[:, [k]]), y).backward()
            ref_opt.step()
    for k, ref in enumerate(refs):
        for p_model, p_ref in zip(model.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p_model[k], p_ref[0], atol=1e-6, rtol=0)
    assert not torch.allclose(model.probes.weights[0][0], model.probes.weights[0][1])


def test_slot_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="l2 needs 2 values"):
        MultiProbe(2, 4, 3, l2=[0.1])
    with pytest.raises(ValueError, match="dropout needs 2 rates"):
        MultiProbe(2, 4, 3, family=MLPProbe, dropout=[0.1, 1.0])
    with pytest.raises(ValueError, match="label_columns"):
        MultiProbe(2, 4, 3).targets(torch.zeros(5, 2, dtype=torch.long))


@pytest.mark.parametrize("family", ["linear", "mlp", "lowrank"])
def test_stopped_slots_take_no_forward_or_backward_work(family: str) -> None:
    """Training computes the running slots only: their logits and gradients are those of the
    full forward, a stopped slot gets no gradient, and the family sees the running ones."""
    from probes.families import LinearProbe, LowRankProbe

    classes = {"linear": LinearProbe, "mlp": MLPProbe, "lowrank": LowRankProbe}
    extra = {"mlp": {"hidden_dim": 4, "dropout": 0.2}, "lowrank": {"rank": 2}}.get(family, {})
    kw = dict(in_dim=5, num_classes=3, seed=2, family=classes[family], **extra)
    model = MultiProbe(4, slot_inputs=[0, 1, 1, 0], label_columns=[0, 0, 1, 1], **kw)
    model.set_input_stats(torch.randn(2, 5), torch.rand(2, 5) + 0.5)
    batch = {"x": torch.randn(16, 2, 5), "y": torch.randint(0, 3, (16, 2))}
    model.eval()  # the same dropout-free forward both ways
    logits, targets = model(batch["x"]), model.targets(batch["y"])
    full = model._loss(logits, batch["y"]).detach()
    per_slot = [F.cross_entropy(logits[:, k], targets[:, k]).item() for k in range(4)]
    assert full.item() == pytest.approx(sum(per_slot), rel=1e-6)
    model.stop_probes(torch.tensor([False, True, False, False]))
    seen = []
    model.probes.register_forward_hook(lambda m, args, out: seen.append(out.shape[1]))
    loss = model.train_loss(batch)
    assert seen == [3]  # slots 0, 2, 3
    assert loss.item() == pytest.approx(sum(per_slot) - per_slot[1], rel=1e-6)
    loss.backward()
    for param in model.probes.parameters():
        assert not bool(param.grad[1].any())  # the stopped slot: no gradient
        assert bool(param.grad[[0, 2, 3]].abs().sum(tuple(range(1, param.dim()))).gt(0).all())
    model.stop_probes(torch.ones(4, dtype=torch.bool))
    assert model.train_loss(batch) is None  # nothing runs: Lightning skips the step
