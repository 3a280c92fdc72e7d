"""Hydra/OmegaConf glue shared by ``train_probe.py``, the ``vlprobe`` CLI and the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

#: the configs shipped inside an installed wheel (setup.py copies ``configs/`` there at build)
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"
#: the repository's top-level ``configs/``: a source checkout or an editable install
CHECKOUT_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def auto_precision() -> str:
    """bf16-mixed where the GPU has bf16, 16-mixed on older GPUs, plain fp32 on CPU."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def auto_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def register_resolvers() -> None:
    """Idempotent: composing configs in tests and in the app may both call it."""
    if not OmegaConf.has_resolver("auto_precision"):
        OmegaConf.register_new_resolver("auto_precision", auto_precision)
    if not OmegaConf.has_resolver("wandb_group"):
        from vlprobe.sweeps import wandb_group

        OmegaConf.register_new_resolver("wandb_group", wandb_group)
    if not OmegaConf.has_resolver("wandb_name"):
        from vlprobe.sweeps import wandb_name

        OmegaConf.register_new_resolver("wandb_name", wandb_name)


def config_dir() -> Path:
    """The Hydra configs: the copy inside the installed package (``pip install .``), else the
    repository's top-level ``configs/`` (a checkout or ``pip install -e .``)."""
    for candidate in (PACKAGED_CONFIGS, CHECKOUT_CONFIGS):
        if (candidate / "train_probe.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"vlprobe's configs are neither at {PACKAGED_CONFIGS} nor at {CHECKOUT_CONFIGS}: "
        "reinstall vlprobe (`pip install .` ships them in the package)"
    )


def config_default(group: str, key: str) -> Any:
    """``key`` of ``configs/<group>/default.yaml``: the one place a default is written, read by
    code that also builds its objects without Hydra (``Probing()``'s ``l2_grid``)."""
    return OmegaConf.to_container(OmegaConf.load(config_dir() / group / "default.yaml"))[key]
