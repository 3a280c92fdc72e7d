"""Rows with typed identity fields -> a W&B run a dashboard can use (a real offline run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vlprobe.reporting.wandb_offline import read_offline_run, wait_for_exit
from vlprobe.reporting.wandb_publish import (
    chart_lines,
    head_grid,
    layer_history,
    publish_rows,
    summary_metrics,
)

LAYERS, HEADS = 13, 12


def _row(subtask: str, kind: str, layer: int, head: int | None, acc: float) -> dict:
    return {
        "task": "visual_relation",
        "subtask": subtask,
        "kind": kind,
        "layer": layer,
        "head": head,
        "stream": None,
        "family": "linear",
        "capacity": {"l2": 0.1},
        "name": "ignored/for/identity",
        "val_acc": acc + 0.01,
        "test_acc": acc,
        "test_acc_low": acc - 0.05,
        "test_acc_high": acc + 0.05,
        "chance": 0.5,
        "selectivity": acc - 0.5,
        "mdl_compression": 1.0 + acc,
        "mdl_prior_compression": 1.04,
    }


def rows() -> list[dict]:
    """2 subtasks x (13 layers x 2 kinds + 12 x 12 heads): 340 probes."""
    out = []
    for subtask in ("identification", "classification"):
        for layer in range(LAYERS):
            out.append(_row(subtask, "embedding", layer, None, 0.5 + 0.03 * layer))
            out.append(_row(subtask, "attention", layer, None, 0.6))
        for layer in range(1, HEADS + 1):  # heads and their layers 1-based, as ProbeId's
            for head in range(1, HEADS + 1):
                out.append(_row(subtask, "head", layer, head, 0.5 + 0.001 * (layer * HEADS + head)))
    return out


def test_summary_picks_on_validation_per_subtask() -> None:
    data = rows()
    data[0]["val_acc"] = 0.99  # identification embedding layer 0: best on validation only
    summary = summary_metrics(data)
    assert summary["summary/identification/best_val_acc"] == 0.99
    assert summary["summary/identification/test_acc"] == pytest.approx(0.5)
    assert summary["summary/identification/best_probe"] == "embedding L0"
    assert summary["summary/classification/best_probe"] == "embedding L12"


def test_layer_history_and_head_grid() -> None:
    data = [r for r in rows() if r["subtask"] == "identification"]
    history = layer_history("identification", data)
    assert sorted(history) == list(range(LAYERS))
    assert history[2]["by_layer/identification/embedding/test_acc"] == pytest.approx(0.56)
    assert history[2]["by_layer/identification/attention/selectivity"] == pytest.approx(0.1)
    assert set(history[2]) == {
        f"by_layer/identification/{kind}/{m}"
        for kind in ("embedding", "attention")
        for m in ("test_acc", "chance", "selectivity", "mdl_compression")
    }
    assert history[2]["by_layer/identification/embedding/chance"] == 0.5  # the panels' reference
    assert not any("head" in key for values in history.values() for key in values)
    grid, layers = head_grid(data, "test_acc")
    assert grid.shape == (HEADS, HEADS) and layers == list(range(1, HEADS + 1))
    assert grid[0, 2] == pytest.approx(0.5 + 0.001 * (HEADS + 3))  # layer 1, head 3
    assert not np.isnan(grid).any()  # no empty column for a head 0 that does not exist
    assert head_grid([r for r in data if r["head"] is None], "test_acc") is None


def test_mdl_chart_draws_the_label_prior_beside_the_probe() -> None:
    data = [r for r in rows() if r["subtask"] == "identification" and r["kind"] == "embedding"]
    charts = chart_lines({r["layer"]: r for r in data})
    assert set(charts) == {"acc", "selectivity", "mdl_compression"}
    mdl = charts["mdl_compression"]
    assert list(mdl) == ["mdl_compression", "mdl_prior_compression"]
    assert mdl["mdl_prior_compression"] == [(layer, 1.04) for layer in range(LAYERS)]
    assert mdl["mdl_compression"][2] == (2, pytest.approx(1.56))
    without = [{k: v for k, v in r.items() if k != "mdl_compression"} for r in data]
    assert "mdl_compression" not in chart_lines({r["layer"]: r for r in without})


def test_published_run_has_few_keys_layer_axis_tables_charts(tmp_path: Path) -> None:
    import wandb

    data = rows()
    run = wandb.init(
        project="t", dir=tmp_path, mode="offline", settings=wandb.Settings(silent=True)
    )
    drawn = publish_rows(run, data, tmp_path / "figures")
    run_dir = Path(run.dir).parent
    run.finish()
    assert wait_for_exit(run_dir)
    logged = read_offline_run(run_dir)
    keys = logged.history_keys()
    # 340 probes; per subtask: 2 tables/images, 2 kinds x (3 charts + 4 history keys); layer
    assert len(keys) == 1 + 2 * (1 + 1 + 2 * (3 + 4)) + 1, sorted(keys)
    for subtask in ("identification", "classification"):
        assert f"tables/{subtask}" in keys and f"heads/{subtask}" in keys
        for name in ("acc", "selectivity", "mdl_compression"):
            assert f"charts/{subtask}/embedding/{name}_by_layer_table" in keys
    by_layer = [k for k in keys if k.startswith("by_layer/")]
    assert by_layer and all(logged.step_metrics.get(k) == "layer" for k in by_layer)
    steps = [h for h in logged.history if "by_layer/identification/embedding/test_acc" in h]
    assert [h["layer"] for h in steps] == list(range(LAYERS))
    assert [h["by_layer/identification/embedding/test_acc"] for h in steps] == pytest.approx(
        [0.5 + 0.03 * layer for layer in range(LAYERS)]
    )
    assert logged.summary["summary/classification/best_val_acc"] == pytest.approx(
        max(r["val_acc"] for r in data if r["subtask"] == "classification")
    )
    assert [p.name for p in drawn] == ["heads_identification.png", "heads_classification.png"]
    assert logged.summary["tables/identification/nrows"] == LAYERS * 2 + HEADS * HEADS
    assert logged.summary["results/nrows"] == len(data)
