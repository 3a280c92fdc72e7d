"""One small demo data set for the erasure tests (100 scenes: enough regions per class that a
linear probe on 32-d states is not at the mercy of a few units)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlprobe.synthetic import make_demo_data

FEATURE_DIM = 16


@pytest.fixture(scope="session")
def feature_dim() -> int:
    """The demo's region feature size (tiny models are built for it)."""
    return FEATURE_DIM


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("value-mini")
    make_demo_data(root, scenes=100, seed=1, feature_dim=FEATURE_DIM, senteval_per_task=20)
    return root


@pytest.fixture(scope="session")
def senteval_root(tmp_path_factory: pytest.TempPathFactory, feature_dim: int) -> Path:
    """Enough SentEval sentences (300 a task) that their label is not separable by luck."""
    root = tmp_path_factory.mktemp("value-senteval")
    make_demo_data(
        root, scenes=20, seed=2, feature_dim=feature_dim, senteval_per_task=300,
        render_images=False,
    )  # fmt: skip
    return root
