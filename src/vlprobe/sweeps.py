"""What a run is called in W&B and what jobs of one Hydra multirun share.

A multirun (local joblib processes, SLURM jobs, Optuna trials) is one experiment; its W&B runs
share a group named after the multirun's folder, so the W&B UI sees them together and apart
from other multiruns, whatever tasks they ran. A single run's group is the task.
Each run is named after what was changed on its command line, so the runs of an ablation can be
told apart at a glance (``visual_relation probe=mlp seed=2``), and tagged with what a
dashboard filters on (task, model, probe family, data, debug).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode


def wandb_group(task_name: str) -> str:
    """``multirun-<multirun folder>`` in a multirun job, else ``<task>``.

    The multirun folder is the parent of the job's resolved output folder (``sweep.dir``):
    every launcher resolves it once for all jobs, in whatever process a job runs. A multirun
    over several tasks puts each task's jobs under its own ``logs/<task>/multiruns/<time>``,
    one time for all: the group is the time, so all its jobs share it (``job_type`` is the
    task).
    """
    if not HydraConfig.initialized():
        return task_name
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN or not hydra.runtime.output_dir:
        return task_name
    return f"multirun-{Path(hydra.runtime.output_dir).parent.name}"


def wandb_name(task_name: str) -> str:
    """``<task> <override> ...``: the task, then every command-line override of the job
    (``hydra.overrides.task``: what differs from the defaults), short: a path value is shown
    by its last part, and the task override is the name's head. Without Hydra: the task."""
    if not HydraConfig.initialized():
        return task_name
    overrides = [short_override(o) for o in HydraConfig.get().overrides.task]
    parts = [task_name, *(o for o in overrides if o)]
    return " ".join(parts)


def short_override(override: str) -> str:
    """``data.cache=/a/b/c.h5`` -> ``data.cache=c.h5``; ``task=...`` -> ``""`` (the task heads
    the name), and so are the keys that say how a run executes and logs, not what it measures
    (``IGNORED_KEYS`` but the seed: ``threads``, ``paths.*``, ``hydra.*`` ...)."""
    from vlprobe.reporting.aggregate import IGNORED_KEYS

    key, sep, value = override.partition("=")
    bare = key.lstrip("+~")
    settings = [k for k in IGNORED_KEYS if k not in ("seed", "seeds")]
    if bare == "task" or any(bare == k or bare.startswith((f"{k}.", f"{k}/")) for k in settings):
        return ""
    if not sep:
        return override
    if "/" in value and not value.startswith(("[", "{")):
        value = Path(value.rstrip("/")).name
    return f"{key}={value}"


def run_tags(cfg: Any, family: str, data: str, debug: bool) -> list[str]:
    """The configured ``tags`` plus probe family, data (``demo`` / ``real``) and ``debug``:
    what a W&B workspace filters runs by. Unique, in order."""
    extra = [family, data, *(["debug"] if debug else [])]
    return list(dict.fromkeys([*(str(t) for t in cfg.get("tags") or []), *extra]))
