"""Hydra/OmegaConf glue shared by ``train_probe.py``, the ``vlprobe`` CLI and the tests."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


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
    """The repository's ``configs/`` (vlprobe is installed editable, see README)."""
    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(
            f"configs not found at {CONFIG_DIR}: install vlprobe from a checkout with "
            "`pip install -e .` so the Hydra configs are next to the package"
        )
    return CONFIG_DIR
