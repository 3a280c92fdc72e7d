"""One small VALUE-mini data set shared by the synthetic-data tests (written once per session)."""

from __future__ import annotations

import pytest

from vlprobe.synthetic import DemoDataPaths, make_demo_data
from vlprobe.synthetic.scenes import Scene, sample_scenes

DEMO_ARGS = dict(scenes=60, seed=0, feature_dim=64, image_size=128, senteval_per_task=240)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoDataPaths:
    return make_demo_data(tmp_path_factory.mktemp("value_mini"), **DEMO_ARGS)


@pytest.fixture(scope="session")
def demo_scenes() -> list[Scene]:
    """The scenes ``demo`` was written from (sampling is deterministic)."""
    return sample_scenes(DEMO_ARGS["scenes"], DEMO_ARGS["seed"], DEMO_ARGS["image_size"])
