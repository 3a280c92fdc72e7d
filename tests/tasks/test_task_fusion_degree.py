"""Fusion degree on the tiny cache: NMI 1 where modalities are apart, 0 where mixed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from probes.run import run
from vlprobe.reporting.run_results import read_run_results

Compose = Callable[..., DictConfig]


def _overrides(path: Path, *extra: str) -> list[str]:
    return ["task=fusion_degree", f"data.cache={path}", "logger=csv", *extra]


def test_test_split_nmi_by_layer(compose_cfg: Compose, tiny_cache: Path, execute_task) -> None:
    out, logger = execute_task(compose_cfg(_overrides(tiny_cache)), tiny_cache)
    assert [r["name"] for r in out.rows] == ["layer_00", "layer_01", "layer_02"]
    assert [r["layer_name"] for r in out.rows] == ["emb", "L01", "L02"]
    assert [(r["kind"], r["layer"], r["family"]) for r in out.rows] == [
        ("layer", i, "none") for i in range(3)
    ]
    np.testing.assert_allclose([r["nmi_pooled"] for r in out.rows], [1, 1, 0], atol=1e-9)
    np.testing.assert_allclose([r["nmi_per_example_mean"] for r in out.rows], [1, 1, 0], atol=1e-9)
    np.testing.assert_allclose([r["nmi_per_example_std"] for r in out.rows], [0, 0, 0], atol=1e-9)
    assert {r["n_examples"] for r in out.rows} == {2}  # e1 and e2: the test split
    assert {r["n_pooled_tokens"] for r in out.rows} == {18}
    assert out.summary["fusion/most_fused_layer"] == "L02"
    assert logger.metrics["fusion/nmi_pooled/layer_01"] == pytest.approx(1.0)
    assert logger.metrics["fusion/nmi_per_example/layer_02"] == pytest.approx(0.0, abs=1e-9)
    assert out.figures["nmi_by_layer"].exists()
    # well separated or evenly mixed: every k-means seed finds the same clustering
    for key in ("nmi_pooled_seed_min", "nmi_pooled_seed_max"):
        np.testing.assert_allclose([r[key] for r in out.rows], [1, 1, 0], atol=1e-9)
    assert {(r["kmeans_seeds"], r["n_init"]) for r in out.rows} == {(5, 10)}
    for key in ("nmi_per_example_seed_min", "nmi_per_example_seed_max"):
        np.testing.assert_allclose([r[key] for r in out.rows], [1, 1, 0], atol=1e-9)
    assert out.summary["fusion/nmi_per_example/max_seed_range"] == pytest.approx(0, abs=1e-9)
    assert "fusion/kmeans_seeds_note" not in out.summary


def test_fewer_than_three_kmeans_seeds_are_flagged(
    compose_cfg: Compose, tiny_cache: Path, execute_task, caplog: pytest.LogCaptureFixture
) -> None:
    out, _ = execute_task(compose_cfg(_overrides(tiny_cache, "task.kmeans_seeds=2")), tiny_cache)
    note = out.summary["fusion/kmeans_seeds_note"]
    assert note.startswith("task.kmeans_seeds=2: the k-means seed spread")
    assert note in caplog.text  # said in the console too
    assert {r["kmeans_seeds"] for r in out.rows} == {2}


def test_all_splits_and_geometric(compose_cfg: Compose, tiny_cache: Path, execute_task) -> None:
    cfg = compose_cfg(_overrides(tiny_cache, "task.split=all", "task.average_method=geometric"))
    out, _ = execute_task(cfg, tiny_cache)
    # e0 (train) is mixed at every layer: per-example NMIs are (0, 1, 1) at layers 0 and 1
    mean = [r["nmi_per_example_mean"] for r in out.rows]
    std = [r["nmi_per_example_std"] for r in out.rows]
    np.testing.assert_allclose(mean, [2 / 3, 2 / 3, 0], atol=1e-9)
    np.testing.assert_allclose(std, [np.sqrt(2) / 3, np.sqrt(2) / 3, 0], atol=1e-9)
    assert {r["n_examples"] for r in out.rows} == {3}
    assert {r["average_method"] for r in out.rows} == {"geometric"}


def test_two_stream_layer_names(
    compose_cfg: Compose, make_tiny_cache: Callable[..., Path], execute_task
) -> None:
    path = make_tiny_cache(model_kind="two-stream")
    out, _ = execute_task(compose_cfg(_overrides(path)), path)
    assert [r["layer_name"] for r in out.rows] == ["X00", "X01", "X02"]
    assert out.summary["fusion/model_kind"] == "two-stream"


def test_bad_split_is_refused(compose_cfg: Compose, tiny_cache: Path) -> None:
    with pytest.raises(InstantiationException, match="task.split"):
        instantiate(compose_cfg(_overrides(tiny_cache, "task.split=dev")).task)
    with pytest.raises(InstantiationException, match="task.n_init must be >= 10"):
        instantiate(compose_cfg(_overrides(tiny_cache, "task.n_init=1")).task)


def test_through_run(compose_cfg: Compose, tiny_cache: Path) -> None:
    cfg = compose_cfg(_overrides(tiny_cache))
    run(cfg)
    out_dir = Path(cfg.paths.output_dir)
    rows = read_run_results(out_dir / "results.json").rows
    assert [r["nmi_pooled"] for r in rows] == pytest.approx([1, 1, 0], abs=1e-9)
    assert (out_dir / "results.csv").exists()
    assert (out_dir / "fusion_nmi_by_layer.png").stat().st_size > 0
    metrics = (out_dir / "csv" / "version_0" / "metrics.csv").read_text()
    assert "fusion/nmi_pooled/layer_02" in metrics  # saved without a Trainer to flush it


def test_max_examples_subsample(compose_cfg: Compose, tiny_cache: Path, execute_task) -> None:
    cfg = compose_cfg(_overrides(tiny_cache, "task.split=all", "task.max_examples=2"))
    out, _ = execute_task(cfg, tiny_cache)
    assert {r["n_examples"] for r in out.rows} == {2}
    assert out.rows[0]["n_pooled_tokens"] in (16, 18)  # e0 + e1 (8 + 8) or a pair with e2
