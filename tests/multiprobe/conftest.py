"""Shared helpers for the probe-engine tests: in-memory dict batches and a quiet CPU trainer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset


def collate_dict(items: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    """TensorDataset items -> the {"x", "y"} batch dict MultiProbe expects."""
    xs, ys = zip(*items, strict=True)
    return {"x": torch.stack(xs), "y": torch.stack(ys)}


@pytest.fixture
def make_loader() -> Callable[..., DataLoader]:
    def _make(x: Tensor, y: Tensor, batch_size: int = 64, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, collate_fn=collate_dict
        )

    return _make


@pytest.fixture
def make_trainer() -> Callable[..., pl.Trainer]:
    def _make(**kwargs: Any) -> pl.Trainer:
        opts: dict[str, Any] = dict(
            accelerator="cpu",
            devices=1,
            precision="32-true",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            max_epochs=1,
        )
        opts.update(kwargs)
        return pl.Trainer(**opts)

    return _make


@pytest.fixture
def planted() -> Callable[..., tuple[Tensor, Tensor]]:
    """(n, P, D) Gaussian noise where only probe ``k``'s first feature carries the binary label."""

    def _make(
        n: int, num_probes: int, dim: int, k: int, margin: float = 2.0, seed: int = 0
    ) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 2, (n,), generator=g)
        x = torch.randn(n, num_probes, dim, generator=g)
        x[:, k, 0] += margin * (2 * y.float() - 1)
        return x, y

    return _make
