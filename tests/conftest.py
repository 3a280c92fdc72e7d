"""Shared fixtures: offline W&B in a temp folder, composed configs, planted caches."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from probes.run import run
from vlprobe.config import config_dir, register_resolvers
from vlprobe.reporting.run_results import read_run_results
from vlprobe.testing.planted import write_planted_relation_cache

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # run() sets torch's threads from it (threads=null)


@pytest.fixture(autouse=True)
def _isolated_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B never writes outside the test's temp folder and never goes online."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("VLPROBE_ROOT", str(tmp_path))


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny probes and models: thread start-up and contention cost more than the math."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose a real config the way ``train_probe.py`` does, output folder in tmp_path."""

    def _compose(overrides: list[str], config_name: str = "train_probe") -> DictConfig:
        register_resolvers()
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.root_dir = str(tmp_path)
        return cfg

    return _compose


@pytest.fixture(scope="session")
def planted_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only hidden layer 2 and head (1, 3) carry the relation label."""
    path = tmp_path_factory.mktemp("planted") / "planted.h5"
    return write_planted_relation_cache(path, num_images=250, signal_layer=2, signal_head=(1, 2))


@pytest.fixture
def planted_rows(compose_cfg, planted_cache: Path) -> Callable[..., list[dict]]:
    """``train_probe`` on a planted cache (default: ``planted_cache``; identification from
    embeddings, CPU, no logger, 6 epochs) with extra overrides: the rows of its results.json."""

    def _run(extra: list[str], cache: Path = planted_cache) -> list[dict]:
        cfg = compose_cfg(
            [
                f"data.cache={cache}",
                "logger=none",
                "trainer=cpu",
                "trainer.max_epochs=6",
                "task.subtasks=[identification]",
                "task.inputs=[embedding]",
                *extra,
            ]
        )
        run(cfg)
        return read_run_results(Path(cfg.paths.output_dir) / "results.json").rows

    return _run
