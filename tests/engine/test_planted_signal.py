"""End to end through `probes.run.run`: the probes find the planted layer and head."""

from __future__ import annotations

from pathlib import Path

from probes.run import run
from vlprobe.reporting.run_results import read_run_results


def test_planted_layer_and_head_win(compose_cfg, planted_cache: Path) -> None:
    cfg = compose_cfg(
        [
            f"data.cache={planted_cache}",
            "logger=csv",
            "trainer=cpu",
            "trainer.max_epochs=12",
            "task.subtasks=[identification]",
        ]
    )
    best = run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = read_run_results(out / "results.json").rows
    layer_acc = {r["probe"]: r["test_acc"] for r in rows if "/embedding/" in r["name"]}
    assert max(layer_acc, key=layer_acc.get) == "layer_02"
    others = [v for k, v in layer_acc.items() if k != "layer_02"]
    assert layer_acc["layer_02"] > 0.95 and max(others) < 0.7
    heads = sorted((r for r in rows if "/head/" in r["name"]), key=lambda r: -r["val_acc"])
    assert heads[0]["probe"] == "L01H03"  # planted at attention layer 1, head index 2
    assert heads[0]["test_acc"] > 0.95 and heads[1]["test_acc"] < 0.75
    assert best is not None and best > 0.95
    assert (out / "identification_by_layer.png").stat().st_size > 0
    assert (out / "identification_heads.png").stat().st_size > 0
    assert (out / "results.csv").read_text().startswith("task,")


def test_layer_selection(compose_cfg, planted_cache: Path) -> None:
    cfg = compose_cfg(
        [
            f"data.cache={planted_cache}",
            "logger=none",
            "trainer=cpu",
            "trainer.max_epochs=2",
            "probing.layers=[0,2]",
            "task.subtasks=[classification]",
            "task.inputs=[embedding]",
        ]
    )
    run(cfg)
    rows = read_run_results(Path(cfg.paths.output_dir) / "results.json").rows
    assert [r["probe"] for r in rows] == ["layer_00", "layer_02"]
