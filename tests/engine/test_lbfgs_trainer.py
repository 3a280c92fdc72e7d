"""The full-batch L-BFGS solver is a LightningModule run by the configured Trainer (issue 22):
one training step per iteration, float32 whatever the precision, one device only."""

from __future__ import annotations

import logging
import subprocess
import sys
from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from probes.full_batch import LBFGSSettings, lbfgs, stop_names
from probes.settings import Probing, Settings
from probes.solvers import lbfgs as solver


def _problem(seed: int, n: int = 200, d: int = 6, c: int = 3) -> solver.Problem:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, n, d, generator=g)
    y = (x[0, :, 0] > 0).long() + (x[0, :, 1] > 1).long()
    l2 = torch.tensor([1e-4, 1e-2, 1.0])
    onehot = torch.nn.functional.one_hot(y, c).float()[:, None].expand(n, 3, c).contiguous()
    return x, onehot, l2, (torch.zeros(2, d, 3, c), torch.zeros(2, 3, c))


class Steps(pl.Callback):
    """Counts the training steps and sees the fit start: configured callbacks apply."""

    def __init__(self) -> None:
        self.steps, self.started = 0, False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = True

    def on_train_batch_end(self, *args: object) -> None:
        self.steps += 1


def _settings(callbacks: list | None = None, **trainer: object) -> Settings:
    kwargs = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, **trainer}
    return Settings(
        probe=partial(object),
        datamodule=partial(object),
        trainer=partial(pl.Trainer, enable_model_summary=False, **kwargs),
        callbacks=callbacks or [],
        probing=Probing(solver="lbfgs"),
    )


def test_trainer_run_equals_the_direct_solve_one_step_per_iteration() -> None:
    """Two problems stepped together by the Trainer end bit-identical to ``lbfgs`` run on
    each alone, after exactly as many training steps as the slowest slot's iterations."""
    steps = Steps()
    settings = _settings([lambda: steps])
    problems = [_problem(0), _problem(1)]
    lbfgs_settings = LBFGSSettings(max_iter=300)
    solved = solver.solve_problems(settings, problems, lbfgs_settings)
    assert steps.started
    most = 0
    for (x, onehot, l2, init), got in zip(problems, solved, strict=True):
        ref = lbfgs(x, onehot, l2, init, lbfgs_settings)
        assert torch.equal(got.params[0], ref.params[0]) and torch.equal(
            got.params[1], ref.params[1]
        )
        for field in ("iterations", "loss", "stop", "grad_max"):
            assert torch.equal(getattr(got, field), getattr(ref, field))
        most = max(most, int(ref.iterations.max()))
    assert 0 < most < 300
    assert steps.steps == most


def test_iteration_budget_is_a_cap() -> None:
    """``probing.max_iter`` bounds the training steps; a capped slot reports the cap and
    says it stopped there, not converged."""
    steps = Steps()
    (solution,) = solver.solve_problems(
        _settings([lambda: steps]), [_problem(0)], LBFGSSettings(max_iter=3)
    )
    assert steps.steps == 3 and int(solution.iterations.max()) == 3
    assert set(stop_names(solution.stop.numpy()).ravel()) == {"max_iter"}
    assert bool((solution.grad_max > 1e-4).all())


def test_mixed_precision_keeps_float32_and_says_so_once(caplog) -> None:
    """``trainer.precision=bf16-mixed`` (autocast) leaves the solve bit-identical to float32,
    and the solver logs once that it keeps float32."""
    problems = [_problem(2)]
    settings = LBFGSSettings(max_iter=200)
    ref = solver.solve_problems(_settings(), problems, settings)
    solver._said.discard("precision")
    with caplog.at_level(logging.WARNING, logger="probes.solvers.lbfgs"):
        mixed = solver.solve_problems(_settings(precision="bf16-mixed"), problems, settings)
        solver.solve_problems(_settings(precision="bf16-mixed"), problems, settings)
    said = [r for r in caplog.records if "keeps float32" in r.getMessage()]
    assert len(said) == 1 and "bf16-mixed" in said[0].getMessage()
    assert mixed[0][0][0].dtype == torch.float32
    assert torch.equal(mixed[0][0][0], ref[0][0][0]) and torch.equal(mixed[0][1], ref[0][1])


def test_a_distributed_strategy_is_refused_in_one_line() -> None:
    """L-BFGS holds the whole view in one process: ``trainer.strategy=ddp`` is refused with
    a line naming the keys to change, before anything is solved."""
    settings = _settings(strategy="ddp", devices=2)
    with pytest.raises(ValueError, match=r"trainer.strategy .*probing.solver=sgd") as err:
        solver.solve_problems(settings, [_problem(0)], LBFGSSettings(max_iter=5))
    assert "\n" not in str(err.value)


def test_no_import_cycle_in_the_core() -> None:
    """MDL uses the solvers without the engine; the solvers never import MDL or the engine."""
    code = "import sys, probes.mdl; assert 'probes.engine' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    code = (
        "import sys, probes.solvers, probes.selection, probes.loggers; "
        "bad = [m for m in ('probes.mdl', 'probes.engine') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
