"""Tiny random-weight adapters, a demo PNG and example inputs shared by the model tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from vlprobe.models.base import ModelInput

if TYPE_CHECKING:
    from vlprobe.models.hf_adapter import HFAdapter

# Set before any test module imports transformers / huggingface_hub (they read it at import).
os.environ["HF_HUB_OFFLINE"] = "1"

FEATURE_DIM = 16
TINY_NAMES = ("visualbert", "lxmert", "vilt", "text", "uniter")


def write_png(path: Path, width: int, height: int, seed: int = 0) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def wide_png(image_dir: Path) -> str:
    """128 x 64 pixels: ViLT (image_size 64, patch 16) resizes it to 96 x 48, a 3 x 6 grid."""
    return write_png(image_dir / "wide.png", 128, 64)


@pytest.fixture(scope="session")
def big_png(image_dir: Path) -> str:
    """96 x 64 pixels: a 4 x 6 grid, more patches than ``wide_png``."""
    return write_png(image_dir / "big.png", 96, 64, seed=1)


@pytest.fixture(scope="session")
def tiny_adapters() -> dict[str, HFAdapter]:
    from vlprobe.testing.models import build_adapter, tiny_config

    return {
        name: build_adapter(name, config=tiny_config(name, feature_dim=FEATURE_DIM), seed=0)
        for name in TINY_NAMES
    }


@pytest.fixture(scope="session")
def make_input(wide_png: str) -> Callable[..., ModelInput]:
    """A caption with ``n_regions`` random regions over the 128 x 64 demo image."""

    def _make(
        sentence: str = "a young man skateboarding down the street",
        n_regions: int = 3,
        seed: int = 0,
        image_path: str | None = None,
        size: tuple[int, int] = (128, 64),
    ) -> ModelInput:
        words = sentence.split()
        if n_regions == 0:
            return ModelInput(words=words)
        rng = np.random.default_rng(seed)
        width, height = size
        x1 = rng.uniform(0, width / 2, n_regions)
        y1 = rng.uniform(0, height / 2, n_regions)
        boxes = np.stack(
            [
                x1,
                y1,
                x1 + rng.uniform(4, width / 2, n_regions),
                y1 + rng.uniform(4, height / 2, n_regions),
            ],
            axis=1,
        ).astype(np.float32)
        return ModelInput(
            words=words,
            region_features=rng.standard_normal((n_regions, FEATURE_DIM)).astype(np.float32),
            region_boxes=boxes,
            image_size=size,
            image_path=image_path or wide_png,
        )

    return _make
