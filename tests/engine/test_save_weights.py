"""``probing.save_weights``: the chosen probes' weights on raw features reproduce their rows."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from probes.run import run
from probes.tasks.visual_relation import VisualRelationTask
from probes.weights import weights_file
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import SPLIT_IDS
from vlprobe.reporting.run_results import read_run_results

BASE = ["logger=none", "trainer=cpu", "task.subtasks=[identification]"]


def test_saved_weights_give_each_rows_test_accuracy(compose_cfg, planted_cache: Path) -> None:
    """Applied to the cache's raw test features, every saved probe predicts exactly the test
    accuracy of its row, with the penalty the row chose; the planted layer is the one that
    separates."""
    cfg = compose_cfg([f"data.cache={planted_cache}", *BASE, "probing.save_weights=true"])
    run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = {r["name"]: r for r in read_run_results(out / "results.json").rows}
    task = VisualRelationTask(subtasks=("identification",), inputs=("embedding", "head"))
    for prefix, view in task.views(CacheReader(planted_cache), layers=None):
        saved = torch.load(weights_file(out / "probe_weights", prefix), weights_only=True)
        assert saved["classes"] == list(view.class_names)
        test = view.rows(SPLIT_IDS["test"])
        x = torch.from_numpy(view.read(test)).float()  # (N, P, D) raw features
        for k, name in enumerate(view.probe_names):
            probe = saved["probes"][name]
            logits = x[:, k] @ probe["weight"] + probe["bias"]
            acc = float((logits.argmax(-1).numpy() == view.labels[test]).mean())
            row = rows[f"{prefix}/{name}"]
            assert probe["l2"] == row["l2"]
            # the row holds a float32 accuracy: equal to well under one test example
            assert abs(acc - row["test_acc"]) < 1e-6, (name, acc, row["test_acc"])
            assert probe["identity"]["kind"] == row["kind"]
    layers = {n: r["test_acc"] for n, r in rows.items() if "/embedding/" in n}
    assert max(layers, key=layers.get).endswith("layer_02")


def test_adam_probes_say_their_weights_are_not_kept(compose_cfg, planted_cache, caplog) -> None:
    cfg = compose_cfg(
        [
            f"data.cache={planted_cache}",
            *BASE,
            "task.inputs=[embedding]",
            "probing.solver=sgd",
            "trainer.max_epochs=2",
            "probing.save_weights=true",
        ]
    )
    with caplog.at_level(logging.WARNING, logger="probes.weights"):
        run(cfg)
    assert any("keeps no weights" in r.getMessage() for r in caplog.records)
    assert not list((Path(cfg.paths.output_dir) / "probe_weights").glob("*.pt"))
    assert np.isfinite(
        read_run_results(Path(cfg.paths.output_dir) / "results.json").rows[0]["test_acc"]
    )
