"""The default logger: an offline W&B run in the run folder, holding the test metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from probes.run import run
from vlprobe.reporting.wandb_offline import read_offline_run


def test_offline_wandb_run_holds_metrics(compose_cfg, planted_cache: Path, capsys) -> None:
    cfg = compose_cfg(
        [
            f"data.cache={planted_cache}",
            "trainer=cpu",
            "trainer.max_epochs=2",
            "task.subtasks=[identification]",
            "task.inputs=[embedding,head]",
        ]
    )
    assert cfg.logger.wandb.offline is True
    run(cfg)
    out = Path(cfg.paths.output_dir)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one offline W&B run per job"
    logged = read_offline_run(runs[0])
    summary = logged.summary
    for key in (
        "test/acc/identification/embedding/layer_02",
        "test/acc/identification/head/L01H03",
        "val/acc/identification/embedding/layer_00",
        "best/identification/test_acc",
        "train/loss",
    ):
        assert key in summary, key
    assert summary["best/identification/test_acc"] > 0.9
    # the full-batch solver's penalty search: each probe's validation accuracy at every
    # penalty of the grid (one step each), the chosen penalty, a table of every slot
    grid = cfg.probing.l2_grid
    path = [h for h in logged.history if "val/acc_by_l2/identification/embedding/layer_02" in h]
    assert [h["l2_grid"] for h in path] == pytest.approx(list(grid))
    assert all(0.0 <= h["val/acc_by_l2/identification/embedding/layer_02"] <= 1.0 for h in path)
    assert summary["l2/identification/embedding/layer_02"] in grid
    tables = [h for h in logged.history if "lbfgs/identification/embedding/nrows" in h]
    assert tables[0]["lbfgs/identification/embedding/nrows"] == 5 * len(grid)  # probes x l2
    assert any(k.startswith("val_acc_by_l2/identification/embedding") for k in tables[0])
    assert logged.config["task"]["name"] == "visual_relation"  # the resolved run config
    printed = capsys.readouterr().out
    assert "wandb sync" in printed and str(runs[0]) in printed
