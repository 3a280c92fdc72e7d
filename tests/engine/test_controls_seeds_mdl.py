"""Seeds in one run, control tasks with selectivity, and MDL through the engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from probes.run import run
from vlprobe.analysis.stats import mean_std_ci


def _rows(compose_cfg, planted_cache: Path, extra: list[str]) -> list[dict]:
    cfg = compose_cfg(
        [
            f"data.cache={planted_cache}",
            "logger=none",
            "trainer=cpu",
            "trainer.max_epochs=6",
            "task.subtasks=[identification]",
            "task.inputs=[embedding]",
            *extra,
        ]
    )
    run(cfg)
    return json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())


def test_seeds_give_mean_std_and_ci(compose_cfg, planted_cache: Path) -> None:
    rows = _rows(compose_cfg, planted_cache, ["seeds=[1,2,3]"])
    row = rows[2]
    per_seed = np.array(row["test_acc_per_seed"])
    mean, std, half = mean_std_ci(per_seed[:, None])
    assert row["seeds"] == [1, 2, 3] and len(per_seed) == 3
    assert row["test_acc"] == pytest.approx(mean[0])
    assert row["test_acc_std"] == pytest.approx(std[0])
    assert row["test_acc_ci95"] == pytest.approx(half[0])


def test_control_task_reports_selectivity(compose_cfg, planted_cache: Path) -> None:
    rows = _rows(
        compose_cfg, planted_cache, ["probing.control=true", "probing.shuffled_control=true"]
    )
    signal = next(r for r in rows if r["probe"] == "layer_02")
    assert signal["selectivity"] == pytest.approx(signal["test_acc"] - signal["control_test_acc"])
    assert signal["selectivity"] > 0.3  # the planted layer decodes the task, not the types
    assert all(r["shuffled_test_acc"] < 0.7 for r in rows)


def test_mdl_codelength_is_short_where_the_signal_is(compose_cfg, planted_cache: Path) -> None:
    rows = _rows(
        compose_cfg,
        planted_cache,
        [
            "probing.mdl=true",
            "probing.mdl_fractions=[0.05,0.1,0.25,0.5,1.0]",
            "probing.layers=[0,2]",
        ],
    )
    noise, signal = rows
    assert signal["mdl_uniform_bits"] == pytest.approx(noise["mdl_uniform_bits"])
    assert signal["mdl_compression"] > 3 * noise["mdl_compression"]
    assert noise["mdl_compression"] < 1.3  # random features compress about as well as uniform
