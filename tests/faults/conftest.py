"""Fault-suite fixtures: a tiny demo set, builder configs, builder processes, cache equality."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf, open_dict

from vlprobe.synthetic.stamp import build_demo
from vlprobe.testing.models import tiny_config

FEATURE_DIM = 64
DEMO = {"scenes": 16, "seed": 1, "feature_dim": FEATURE_DIM}
MODEL_CONFIGS = {"lxmert": "lxmert_small"}  # configs/model/ of a tiny_config architecture


@pytest.fixture(scope="session")
def fault_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault-demo") / "value-mini"
    build_demo(root, **DEMO, senteval_per_task=60, render_images=False)
    return root


@pytest.fixture
def builder_cfg(compose_cfg, fault_demo: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """``make(dataset, root=fault_demo, cache_dir=tmp/cache, model=None, shards=None)``: a
    resolved extract config with a tiny random model (``model``: text for SentEval,
    VisualBERT otherwise; ``lxmert``: every stream; ``uniter_mini``: pre-trained, 1 layer)
    written in ``shards`` shards."""

    def make(
        dataset: str,
        root: Path | None = None,
        cache_dir: Path | None = None,
        model: str | None = None,
        shards: int | None = None,
    ) -> DictConfig:
        model = model or ("text" if dataset.startswith("senteval/") else "visualbert")
        cfg = compose_cfg(
            [
                f"model={MODEL_CONFIGS.get(model, model)}",
                f"data.root={root or fault_demo}",
                *(f"data.{k}={v}" for k, v in DEMO.items()),
                f"dataset={dataset}",
                "extraction.progress=false",
                "extraction.batch_size=4",
                f"extraction.shards={shards or 'null'}",
            ],
            config_name="extract",
        )
        with open_dict(cfg):
            if model == "uniter_mini":  # pre-trained for real, one layer, a few steps
                cfg.model.out_dir = str(tmp_path / "models")
                cfg.model.progress = False
                cfg.model.pretrain.merge_with(
                    {"layers": 1, "steps": 1, "batch_size": 4, "contrastive_steps": 1}
                )
            else:
                cfg.model.pretrained = None
                cfg.model.config = tiny_config(model, feature_dim=FEATURE_DIM)
            cfg.paths.cache_dir = str(cache_dir or tmp_path / "cache")
        keys = [k for k in cfg if k != "hydra"]
        return OmegaConf.create(
            OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
        )

    return make


@pytest.fixture(scope="session")
def processes() -> multiprocessing.context.BaseContext:
    """Builder processes forked from a server that imported the pipeline once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "h5py", "vlprobe.extraction.pipeline"])
    return ctx


def same_cache(a: Path, b: Path) -> list[str]:
    """Datasets whose values differ between two caches (empty: the same data, NaN = NaN)."""
    differing: list[str] = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names: list[str] = []
        fa.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        other: list[str] = []
        fb.visititems(lambda n, o: other.append(n) if isinstance(o, h5py.Dataset) else None)
        if sorted(names) != sorted(other):
            return [f"dataset lists differ: {sorted(set(names) ^ set(other))}"]
        for name in names:
            va, vb = fa[name][()], fb[name][()]
            # NaN by design (the vision stream's [CLS] mass) equals NaN
            if not np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"):
                differing.append(name)
    return differing
