"""``probing.save_weights``: the chosen probes' weights on raw features reproduce their rows."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def _first_seed(row: dict, metric: str) -> object:
    return row[f"{metric}_per_seed"][0] if f"{metric}_per_seed" in row else row.get(metric)


def _mlp_logits(probe: dict, x: torch.Tensor) -> torch.Tensor:
    """The saved ``apply`` line of a ReLU MLP, written out without vlprobe."""
    state, h = probe["state_dict"], (x - probe["mean"]) / probe["std"]
    layers = len([n for n in state if n.startswith("weights.")])
    for i in range(layers):
        h = h @ state[f"weights.{i}"] + state[f"biases.{i}"]
        h = torch.relu(h) if i < layers - 1 else h
    return h


@pytest.mark.parametrize(
    "extra",
    [
        ["seeds=[0,1]", "probing.control=true"],  # task = groups[0] among seeds and controls
        ["probe=mlp", "probe.hidden_dim=8", "probing.select={hidden_dim:[8,16],dropout:[0.0,0.3]}"],
    ],
    ids=["linear", "mlp"],
)
def test_adam_saved_probes_give_each_rows_test_accuracy(
    compose_cfg, planted_cache: Path, extra: list[str]
) -> None:
    """probing.solver=sgd: every saved probe (its best epoch's parameters, the first seed's
    chosen candidate) applied to the raw test features gives its row's first-seed test
    accuracy, under the candidate the row chose."""
    cfg = compose_cfg(
        [
            f"data.cache={planted_cache}",
            *BASE,
            "task.inputs=[embedding]",
            "probing.solver=sgd",
            "trainer.max_epochs=4",
            "probing.save_weights=true",
            *extra,
        ]
    )
    run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = {r["name"]: r for r in read_run_results(out / "results.json").rows}
    task = VisualRelationTask(subtasks=("identification",), inputs=("embedding",))
    ((prefix, view),) = task.views(CacheReader(planted_cache), layers=None)
    saved = torch.load(weights_file(out / "probe_weights", prefix), weights_only=True)
    test = view.rows(SPLIT_IDS["test"])
    x = torch.from_numpy(view.read(test)).float()
    accs = []
    for k, name in enumerate(view.probe_names):
        probe, row = saved["probes"][name], rows[f"{prefix}/{name}"]
        if "weight" in probe:  # linear: raw-feature weights
            logits = x[:, k] @ probe["weight"] + probe["bias"]
            assert probe["l2"] == _first_seed(row, "l2")
        else:
            assert probe["family"] == "mlp" and "relu" in probe["apply"]
            assert probe["state_dict"]["weights.0"].shape[1] == probe["select"]["hidden_dim"]
            for key, value in probe["select"].items():
                assert row[key] == value, key
            logits = _mlp_logits(probe, x[:, k])
        acc = float((logits.argmax(-1).numpy() == view.labels[test]).mean())
        assert abs(acc - _first_seed(row, "test_acc")) < 1e-6, (name, acc, row)
        accs.append(acc)
    assert max(accs) > 0.9 and min(accs) < 0.8  # the planted layer separates, the others less
