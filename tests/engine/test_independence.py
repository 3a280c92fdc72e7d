"""A probe's result depends only on its data, hyper-parameters and seed (issue 10).

Alone == inside the full fused run, ``seeds=[1,2]`` == separate runs, control and shuffled
slots riding along == separate runs, for both solvers (full-batch L-BFGS and Adam).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from probes.run import run
from vlprobe.reporting.run_results import read_run_results

BASE = [
    "logger=none",
    "trainer=cpu",
    "task.subtasks=[identification]",
    "task.inputs=[embedding]",
]


def _rows(compose_cfg, cache: Path, extra: list[str]) -> dict[str, dict]:
    cfg = compose_cfg([f"data.cache={cache}", *BASE, *extra])
    run(cfg)
    rows = read_run_results(Path(cfg.paths.output_dir) / "results.json").rows
    return {r["probe"]: r for r in rows}


SGD = ["probing.solver=sgd", "trainer.max_epochs=8", "callbacks.plateau.patience=2"]
SOLVERS = {"lbfgs": ["probing.solver=lbfgs"], "sgd": SGD}


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_probe_alone_equals_probe_in_full_run(compose_cfg, planted_cache, solver) -> None:
    full = _rows(compose_cfg, planted_cache, SOLVERS[solver])
    for layer in (1, 2):
        alone = _rows(compose_cfg, planted_cache, [*SOLVERS[solver], f"probing.layers=[{layer}]"])
        name = f"layer_{layer:02d}"
        for key in ("test_acc", "val_acc", "best_epoch", "l2"):
            assert alone[name].get(key) == full[name].get(key), (name, key)
    assert full["layer_02"]["test_acc"] > 0.9 > full["layer_00"]["test_acc"]


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_seeds_and_controls_in_one_run_equal_separate_runs(
    compose_cfg, planted_cache, solver, capsys
) -> None:
    controls = ["probing.control=true", "probing.shuffled_control=true", "probing.layers=[1,2]"]
    together = _rows(compose_cfg, planted_cache, [*SOLVERS[solver], *controls, "seeds=[1,2]"])
    printed = capsys.readouterr().out
    assert "seeds 1,2" in printed  # the console title names every seed
    for column in ("test_acc_ci95", "control_test_acc", "selectivity", "shuffled_test_acc"):
        assert column in printed  # what was asked for reaches the console table
    alone = [
        _rows(compose_cfg, planted_cache, [*SOLVERS[solver], *controls, f"seed={s}"])
        for s in (1, 2)
    ]
    for name, row in together.items():
        assert row["test_acc_per_seed"] == [a[name]["test_acc"] for a in alone]
        for key in ("control_test_acc", "shuffled_test_acc"):
            assert row[key] == pytest.approx(np.mean([a[name][key] for a in alone]), abs=1e-12)
    if solver == "lbfgs":
        assert together["layer_02"]["l2_per_seed"] == [a["layer_02"]["l2"] for a in alone]


def _count_fits(monkeypatch) -> list:
    """The modules ``trainer.fit`` trains (one per pass over the data)."""
    import probes.solvers.adam as adam

    fits, fit_model = [], adam.fit_model
    monkeypatch.setattr(
        adam, "fit_model", lambda m, *a, **kw: fits.append(m) or fit_model(m, *a, **kw)
    )
    return fits


def test_mlp_capacity_selected_per_probe_on_validation(
    compose_cfg, planted_cache, monkeypatch
) -> None:
    """``probing.select`` trains every combination in one pass: dropout and weight decay as
    slots, each width as its own module in the same loop. Each probe keeps the combination
    with the best validation accuracy, equal to the separate run of that combination."""
    fits = _count_fits(monkeypatch)
    common = ["probe=mlp", "trainer.max_epochs=3", "probing.layers=[1,2]"]
    select = "probing.select={hidden_dim:[2,16],dropout:[0.0,0.3],weight_decay:[0.0,0.5]}"
    chosen = _rows(compose_cfg, planted_cache, [*common, select])
    assert len(fits) == 1 and len(fits[0].members) == 2  # one loop, one module per width
    grid = list(itertools.product((2, 16), (0.0, 0.3), (0.0, 0.5)))
    separate = {
        combo: _rows(
            compose_cfg,
            planted_cache,
            [
                *common,
                *(
                    f"probe.{k}={v}"
                    for k, v in zip(("hidden_dim", "dropout", "weight_decay"), combo, strict=True)
                ),
            ],
        )
        for combo in grid
    }
    for name, row in chosen.items():
        best = max(grid, key=lambda c: (separate[c][name]["val_acc"], -grid.index(c)))
        assert (row["hidden_dim"], row["dropout"], row["weight_decay"]) == best
        assert row["test_acc"] == separate[best][name]["test_acc"]
        assert row["best_epoch"] == separate[best][name]["best_epoch"]
    assert len({separate[c]["layer_01"]["val_acc"] for c in grid}) > 1  # the choice matters


def test_adam_path_picks_l2_on_validation_in_one_pass(
    compose_cfg, planted_cache, monkeypatch
) -> None:
    """Linear probes on the Adam path try every penalty of ``probing.l2_grid`` as slots of one
    pass over every seed (each seed's module on its own batches; control and shuffled control
    riding along): each probe keeps the one with the best validation accuracy (ties: the
    larger), equal to the run with that penalty alone."""
    fits = _count_fits(monkeypatch)
    common = [*SGD, "probing.layers=[0,1]", "probing.control=true"]
    grid = (1.0, 1e-4)
    rows = _rows(
        compose_cfg,
        planted_cache,
        [*common, "probing.shuffled_control=true", "seeds=[1,2]", "probing.l2_grid=[1.0,1e-4]"],
    )
    assert len(fits) == 1  # one loop: a module per seed, 2 probes x 3 label sets x 2 penalties
    assert [len(m.probe_names) for m in fits[0].members] == [2 * 3 * 2] * 2
    alone = {
        l2: _rows(compose_cfg, planted_cache, [*common, "seed=1", f"probing.l2_grid=[{l2}]"])
        for l2 in grid
    }
    for name, row in rows.items():
        best = max(grid, key=lambda l2: (alone[l2][name]["val_acc"], l2))
        assert row["l2_per_seed"][0] == best
        assert row["test_acc_per_seed"][0] == alone[best][name]["test_acc"]
        assert row["solver"] == "sgd"
    assert {row["l2_per_seed"][0] for row in rows.values()} <= set(grid)
