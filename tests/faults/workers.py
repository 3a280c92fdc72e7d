"""Builder processes for the fault tests (run in a forkserver: imports paid once)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vlprobe.cache.schema import PARTS
from vlprobe.extraction.pipeline import ensure_cache


def _setup(log_file: str | None) -> None:
    torch.set_num_threads(1)
    if log_file:
        logging.basicConfig(
            filename=log_file, level=logging.INFO, format="%(name)s: %(message)s", force=True
        )


def noop(*args: object) -> None:
    """Starts the forkserver, so that timing a build does not time the server's imports."""


def build(cfg_yaml: str, dataset: str, log_file: str | None = None) -> None:
    """Build (or reuse) the cache of ``dataset``, every part."""
    _setup(log_file)
    ensure_cache(OmegaConf.create(cfg_yaml), dataset, PARTS)


def build_together(cfg_yaml: str, dataset: str, ready_dir: str, n: int, log_file: str) -> None:
    """Wait until ``n`` builders are ready, then all ask for the same cache at once."""
    _setup(log_file)
    cfg = OmegaConf.create(cfg_yaml)
    ready = Path(ready_dir)
    (ready / str(os.getpid())).touch()
    while len(list(ready.iterdir())) < n:
        time.sleep(0.002)
    ensure_cache(cfg, dataset, PARTS)
