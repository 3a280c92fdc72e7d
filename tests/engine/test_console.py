"""The console: a progress line per probed view, third-party noise filtered by its exact
message (other warnings still shown), torch threads from ``threads`` / OMP_NUM_THREADS."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from vlprobe.console import (
    LITLOGGER_TIP,
    default_threads,
    quiet_third_party,
    quiet_wandb_logger,
    set_threads,
)

ROOT = Path(__file__).resolve().parents[2]


def test_filters_drop_only_the_named_messages(caplog: pytest.LogCaptureFixture) -> None:
    quiet_third_party()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_third_party()  # after the reset above, as at a run's start
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ... instead.",
            FutureWarning,
            stacklevel=2,
        )
        warnings.warn("another deprecation", FutureWarning, stacklevel=2)
    assert [str(w.message) for w in caught] == ["another deprecation"]
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=rank_zero.name):
        rank_zero.info(f"💡 {LITLOGGER_TIP}(https://pypi.org/project/litlogger/) to enable ...")
        rank_zero.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_wandb_logger_passes_no_anonymous_setting(tmp_path: Path) -> None:
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(offline=True, save_dir=str(tmp_path))
    assert "anonymous" in logger._wandb_init  # what Lightning passes and wandb warns about
    quiet_wandb_logger(logger)
    assert "anonymous" not in logger._wandb_init


def test_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == min(4, os.cpu_count() or 1)
    assert set_threads(2) == 2 and torch.get_num_threads() == 2
    for bad in (0, -1, 1.5, "two", True):
        with pytest.raises(ValueError, match=r"^threads="):
            set_threads(bad)


def test_a_run_prints_progress_and_no_third_party_noise(
    planted_cache: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "VLPROBE_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_SILENT", None)  # the console as a user sees it
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train_probe.py"),
            f"data.cache={planted_cache}",
            "trainer=cpu",
            "task.subtasks=[identification]",
            "task.inputs=[embedding]",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert "probing identification/embedding: 5 probes, lbfgs, " in console
    assert "probing identification/embedding: done in " in console
    for noise in ("litlogger", "LeafSpec", "anonymous setting"):
        assert noise not in console, noise
