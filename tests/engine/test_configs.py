"""Every config group option composes, and bad choices fail with the valid ones listed."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from vlprobe.config import config_dir

ROOT = Path(__file__).resolve().parents[2]


def _options(group: str) -> list[str]:
    base = config_dir() / group
    return sorted(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.yaml"))


@pytest.mark.parametrize(
    "group",
    [
        "task",
        "probe",
        "probing",
        "data",
        "loader",
        "model",
        "trainer",
        "logger",
        "experiment",
        "debug",
    ],
)
def test_every_option_of_a_group_composes(compose_cfg, group: str) -> None:
    options = _options(group)
    assert options, f"configs/{group} is empty"
    for option in options:
        cfg = compose_cfg([f"{group}={option}"])
        assert cfg.task.name and cfg.model.name


def test_task_and_probe_combinations_compose(compose_cfg) -> None:
    for task, probe in itertools.product(_options("task"), _options("probe")):
        cfg = compose_cfg([f"task={task}", f"probe={probe}"])
        assert instantiate(cfg.probe.family).name == probe


@pytest.mark.parametrize("logger", ["wandb", "csv", "tensorboard", "none"])
def test_loggers_and_trainer_instantiate(compose_cfg, logger: str) -> None:
    cfg = compose_cfg([f"logger={logger}", "trainer=cpu"])
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    assert len(loggers) == (0 if logger == "none" else 1)
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.precision == "32-true"


def test_default_precision_is_fp32_on_cpu(compose_cfg) -> None:
    cfg = compose_cfg([])
    assert cfg.trainer.precision == "32-true"  # this machine has no GPU


def test_unknown_task_lists_valid_choices(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "train_probe.py"), "task=nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("train_probe: error: task=nope: no such option; valid: ")
    assert "visual_relation" in line and "linguistic/all" in line  # every valid choice


def test_missing_cache_is_one_line_error_and_writes_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "train_probe.py"), f"data.cache={tmp_path / 'nope.h5'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "VLPROBE_ROOT": str(tmp_path), "WANDB_MODE": "offline"},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"train_probe: error: data.cache={tmp_path / 'nope.h5'} does not exist: point it at a "
        "cache written by `vlprobe extract`, or leave data.cache=null to build one"
    ]
    assert not list(tmp_path.rglob("results.json")) and not list(tmp_path.rglob("offline-run-*"))
