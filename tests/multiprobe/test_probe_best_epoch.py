"""Per-probe best epoch: snapshots, ties, testing at the best state, plateau stopping."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from probes import AllProbesPlateau, MultiProbe
from probes.families import MLPProbe

# Linear (D=2, C=2) weights for a probe whose feature 0 is +-1 with the label's sign.
GOOD = torch.tensor([[-1.0, 1.0], [0.0, 0.0]])
GOOD2 = 2 * GOOD  # same predictions as GOOD: a tie in val acc
BAD = -GOOD  # always wrong
MID = torch.zeros(2, 2)  # ties -> argmax picks class 0: acc = share of class 0
# SCHEDULE[epoch] = (probe 0 weights, probe 1 weights) set just before that val epoch.
SCHEDULE = [(MID, MID), (GOOD, BAD), (GOOD2, MID), (BAD, GOOD), (BAD, BAD)]


class ForceWeights(pl.Callback):
    """Overwrite the probes' weights before each val epoch, giving a known acc trajectory."""

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: MultiProbe) -> None:
        if trainer.sanity_checking:
            return
        w0, w1 = SCHEDULE[trainer.current_epoch]
        with torch.no_grad():
            pl_module.probes.weights[0].copy_(torch.stack([w0, w1]))
            pl_module.probes.biases[0].zero_()


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.zeros(n, 2, 2)
    x[:, :, 0] = (2 * y.float() - 1).unsqueeze(1)
    x[:, :, 1] = torch.randn(n, 2, generator=g)
    return x, y


def test_each_probe_tested_at_its_own_best_epoch(make_loader, make_trainer) -> None:
    x, y = _data(96, 0)
    xt, yt = _data(64, 1)
    model = MultiProbe(2, 2, 2, lr=1e-3, probe_names=["layer_00", "layer_01"])
    trainer = make_trainer(max_epochs=len(SCHEDULE), callbacks=[ForceWeights()])
    trainer.fit(model, make_loader(x, y, 32), make_loader(x, y, 32))

    assert model.best_epoch.tolist() == [1, 3]  # probe 0's epoch-2 tie keeps epoch 1
    assert model.best_val_acc.tolist() == [1.0, 1.0]
    torch.testing.assert_close(model.best_param_0[0], GOOD)  # not GOOD2
    torch.testing.assert_close(model.best_param_0[1], GOOD)
    final = model.probes.weights[0].detach().clone()
    torch.testing.assert_close(final, torch.stack([BAD, BAD]))

    trainer.test(model, make_loader(xt, yt, 32))  # ckpt_path=None: the module's own state
    rows = model.results()
    assert [r["test_acc"] for r in rows] == [1.0, 1.0]  # the final (BAD) weights would give 0
    assert [r["best_epoch"] for r in rows] == [1, 3]
    assert rows[0]["chance"] == pytest.approx(max(yt.float().mean(), 1 - yt.float().mean()))
    assert trainer.callback_metrics["test/acc/layer_01"] == 1.0
    assert torch.equal(model.probes.weights[0], final)  # restored after testing

    # A module that was never validated is tested with its current parameters.
    fresh = MultiProbe(2, 2, 2)
    with torch.no_grad():
        fresh.probes.weights[0].copy_(torch.stack([BAD, GOOD]))
        fresh.probes.biases[0].zero_()
    make_trainer().test(fresh, make_loader(xt, yt, 32))
    assert fresh.test_acc.tolist() == [0.0, 1.0]


def test_update_best_masks_probes() -> None:
    model = MultiProbe(3, 4, 2)
    w_epoch0 = model.probes.weights[0].detach().clone()
    assert model.update_best(torch.tensor([0.5, 0.6, 0.7]), torch.zeros(3), 0).all()
    with torch.no_grad():
        model.probes.weights[0].add_(1.0)
    improved = model.update_best(torch.tensor([0.5, 0.9, 0.1]), torch.ones(3), 1)
    assert improved.tolist() == [False, True, False]
    assert model.best_epoch.tolist() == [0, 1, 0]
    assert model.best_val_f1.tolist() == [0.0, 1.0, 0.0]
    torch.testing.assert_close(model.best_param_0[[0, 2]], w_epoch0[[0, 2]])
    torch.testing.assert_close(model.best_param_0[1], w_epoch0[1] + 1.0)


def test_best_state_survives_a_checkpoint_round_trip() -> None:
    model = MultiProbe(2, 3, 2, family=MLPProbe, hidden_dim=4)
    model.update_best(torch.tensor([0.8, 0.3]), torch.tensor([0.7, 0.2]), 4)
    clone = MultiProbe(**model.hparams)
    clone.load_state_dict(model.state_dict())
    assert clone.best_epoch.tolist() == [4, 4]
    assert torch.equal(clone.best_param_1, model.best_param_1)


def test_all_probes_plateau_stops(make_loader, make_trainer) -> None:
    x, y = _data(64, 0)
    model = MultiProbe(2, 2, 2, lr=0.0)  # nothing learns: only epoch 0 "improves"
    stopper = AllProbesPlateau(patience=2)
    trainer = make_trainer(max_epochs=20, callbacks=[stopper])
    trainer.fit(model, make_loader(x, y, 32), make_loader(x, y, 32))
    assert stopper.stopped_epoch == 2  # epochs 1 and 2 without improvement
    assert trainer.current_epoch == 3
    assert model.best_epoch.tolist() == [0, 0]
    assert stopper.wait.tolist() == [2, 2] and stopper.stopped_epoch == 2  # per probe
    assert bool(model.stopped.all())
