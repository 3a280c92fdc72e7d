"""Sweeps on Hydra's launchers: local joblib jobs (run here), SLURM (composed), Optuna."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vlprobe.reporting.wandb_offline import read_offline_run

ROOT = Path(__file__).resolve().parents[2]


def test_joblib_optuna_multirun_jobs_share_one_wandb_group(
    planted_cache: Path, tmp_path: Path
) -> None:
    """Two Optuna trials as two parallel joblib processes: one W&B group, the multirun's."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train_probe.py"),
            "-m",
            "hparams_search=mlp_optuna",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2",
            f"data.cache={planted_cache}",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "task.subtasks=[identification]",
            "task.inputs=[attention]",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "VLPROBE_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "visual_relation" / "multiruns").iterdir()
    runs = [read_offline_run(p) for p in sorted(sweep.glob("*/wandb/offline-run-*"))]
    assert len(runs) == 2
    assert {r.group for r in runs} == {f"multirun-{sweep.name}"}
    assert len({r.summary["val/acc_best"] for r in runs}) == 2  # two different trials
    # the sweeper maximised what each job returned: optimized_metric, val/acc_best
    best = OmegaConf.load(sweep / "optimization_results.yaml").best_value
    assert best == pytest.approx(max(r.summary["val/acc_best"] for r in runs))


def test_a_single_run_is_grouped_by_task(compose_cfg) -> None:
    cfg = compose_cfg(["task=fusion_degree"])
    assert cfg.logger.wandb.group == "fusion_degree"


def test_slurm_launcher_takes_partition_gpus_and_time_from_config(
    compose_cfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLPROBE_SLURM_PARTITION", "a100")
    cfg = compose_cfg(
        [
            "hydra/launcher=slurm",
            "trainer=gpu",
            "trainer.devices=4",
            "hydra.launcher.timeout_min=90",
        ]
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["partition"] == "a100"
    assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == 4  # one task per GPU
    assert launcher["timeout_min"] == 90
    assert launcher["submitit_folder"].endswith("/.submitit/%j")
    # the plugin accepts these settings (building it submits nothing)
    assert instantiate(cfg.hydra.launcher).params["gpus_per_node"] == 4


def test_optuna_sweeper_searches_probe_hyperparameters(compose_cfg) -> None:
    cfg = compose_cfg(["hparams_search=mlp_optuna"])
    assert cfg.probe.family.path == "probes.families.MLPProbe"
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {
        "probe.lr",
        "probe.weight_decay",
        "probe.hidden_dim",
        "probe.dropout",
    }
    assert cfg.optimized_metric == "val/acc_best"
    assert sweeper.study_name == "visual_relation-visualbert-minilm-mlp"


def test_run_name_holds_every_override_short_and_job_type_is_the_task(compose_cfg) -> None:
    overrides = ["probe=mlp", "seed=2", "task=visual_coreference", "data.cache=/a/b/c.h5"]
    # how the run executes is not what it measures: threads and paths stay out of the name
    overrides += ["threads=1", "paths.log_dir=/tmp/x", "extraction.progress=false"]
    cfg = compose_cfg(overrides)
    assert cfg.logger.wandb.name == "visual_coreference probe=mlp seed=2 data.cache=c.h5"
    assert cfg.logger.wandb.job_type == "visual_coreference"
    assert compose_cfg([]).logger.wandb.name == "visual_relation"  # defaults: the task only


def test_tags_name_task_model_family_data_and_debug(compose_cfg) -> None:
    from probes.run import family_name
    from vlprobe.sweeps import run_tags

    cfg = compose_cfg(["probe=mlp", "model=uniter_mini"])
    assert run_tags(cfg, family_name(cfg), "demo", debug=False) == [
        "visual_relation",
        "uniter-mini",
        "mlp",
        "demo",
    ]
    cfg = compose_cfg(["data=real", "data.root=/data"])
    assert run_tags(cfg, family_name(cfg), "real", debug=True)[-3:] == ["linear", "real", "debug"]
