"""What jobs of one Hydra multirun share: their W&B group.

A multirun (local joblib processes, SLURM jobs, Optuna trials) is one experiment; its W&B runs
share a group named after the multirun's folder, so the W&B UI and ``vlprobe report`` see them
together and apart from other multiruns of the same task. A single run's group is the task.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode


def wandb_group(task_name: str) -> str:
    """``<task>-<multirun folder>`` in a multirun job, else ``<task>``.

    The multirun folder is the parent of the job's resolved output folder (``sweep.dir``):
    every launcher resolves it once for all jobs, in whatever process a job runs.
    """
    if not HydraConfig.initialized():
        return task_name
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN or not hydra.runtime.output_dir:
        return task_name
    return f"{task_name}-{Path(hydra.runtime.output_dir).parent.name}"
