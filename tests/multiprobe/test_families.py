"""Probe families: the low-rank probe's rank limit, its training, and config selection."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from probes import MultiProbe
from probes.families import LinearProbe, LowRankProbe, MLPProbe


def test_lowrank_limits_the_rank_of_the_effective_weight(
    make_loader, make_trainer, planted
) -> None:
    """After training, each probe's (D, C) map U @ V has rank exactly ``rank`` (< min(D, C))."""
    x, _ = planted(256, 3, 8, k=0)
    y = torch.randint(0, 6, (256,), generator=torch.Generator().manual_seed(1))
    pl.seed_everything(0)
    model = MultiProbe(3, 8, 6, family=LowRankProbe, rank=2, lr=1e-2)
    make_trainer(max_epochs=2).fit(model, make_loader(x, y, 32), make_loader(x, y, 32))
    weight = model.probes.effective_weight()
    assert weight.shape == (3, 8, 6)
    assert torch.linalg.matrix_rank(weight.detach()).tolist() == [2, 2, 2]
    assert model.num_params_per_probe == 8 * 2 + 2 * 6 + 6
    # the forward pass is that linear map (identity input statistics): x @ (U V) + b
    expected = torch.einsum("bpd,pdc->bpc", x, weight) + model.probes.bias
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_lowrank_probe_finds_a_planted_signal(make_loader, make_trainer, planted) -> None:
    num_probes, k = 4, 1
    x, y = planted(1400, num_probes, 8, k=k)
    tr, va, te = slice(0, 1000), slice(1000, 1200), slice(1200, 1400)
    pl.seed_everything(0)
    model = MultiProbe(num_probes, 8, 2, family=LowRankProbe, rank=1, lr=1e-2)
    trainer = make_trainer(max_epochs=8)
    trainer.fit(model, make_loader(x[tr], y[tr], shuffle=True), make_loader(x[va], y[va]))
    trainer.test(model, make_loader(x[te], y[te]))
    acc = [r["test_acc"] for r in model.results()]
    assert acc[k] > 0.9
    assert max(a for i, a in enumerate(acc) if i != k) < 0.7


def test_probe_config_selects_the_family(compose_cfg) -> None:
    expected = {"linear": LinearProbe, "mlp": MLPProbe, "lowrank": LowRankProbe}
    for name, cls in expected.items():
        overrides = [f"probe={name}", *(["probe.rank=3"] if name == "lowrank" else [])]
        model = instantiate(compose_cfg(overrides).probe)(num_probes=2, in_dim=5, num_classes=4)
        assert type(model.probes) is cls and model.probes.name == name
    assert model.probes.rank == 3
    assert model.hparams["family"] == "probes.families.LowRankProbe"
    assert MultiProbe(**model.hparams).probes.rank == 3  # rebuilt from its hyperparameters
