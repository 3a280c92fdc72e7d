"""train_probe.py on 2 processes (gloo, ddp): the one-process results, synced on every rank."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from probes.run import run
from vlprobe.reporting.run_results import read_run_results

ROOT = Path(__file__).resolve().parents[2]
# the Adam path: the full-batch L-BFGS solver runs in one process and starts no other rank
OVERRIDES = [
    "trainer=cpu",
    "trainer.max_epochs=6",
    "logger=csv",
    "task.inputs=[embedding,head]",
    "probing.solver=sgd",
]


def test_two_ddp_processes_match_one_process(compose_cfg, planted_cache: Path, tmp_path) -> None:
    cfg = compose_cfg([f"data.cache={planted_cache}", *OVERRIDES])
    run(cfg)
    single = read_run_results(Path(cfg.paths.output_dir) / "results.json").rows

    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train_probe.py"),
            f"data.cache={planted_cache}",
            *OVERRIDES,
            "trainer.devices=2",
            "trainer.strategy=ddp",
            f"hydra.run.dir={tmp_path / 'ddp'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "VLPROBE_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("results: ") == 1  # rank 0 publishes, once
    ddp = read_run_results(tmp_path / "ddp" / "results.json").rows
    rank1 = read_run_results(tmp_path / "ddp" / ".rank1" / "results.json").rows

    # every rank ends with the same synced metrics and best epochs
    keys = ("name", "val_acc", "best_epoch", "test_acc", "test_f1")
    assert [[r[k] for k in keys] for r in ddp] == [[r[k] for k in keys] for r in rank1]
    # the same probes on the same rows: split sizes are the datasets', not a rank's share
    assert [(r["name"], r["n_train"], r["n_test"]) for r in ddp] == [
        (r["name"], r["n_train"], r["n_test"]) for r in single
    ]
    mean_ddp = np.mean([r["test_acc"] for r in ddp])
    mean_single = np.mean([r["test_acc"] for r in single])
    assert abs(mean_ddp - mean_single) <= 0.01, (mean_ddp, mean_single)
    # the planted layer and head are found by both
    best = {r["name"]: r["test_acc"] for r in ddp}
    assert best["identification/embedding/layer_02"] > 0.95
    assert best["identification/head/L01H03"] > 0.95
