"""fast_dev_run smoke tests of every probe kind and every loader mode, through train_probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from probes.run import run
from vlprobe.reporting.run_results import read_run_results


@pytest.mark.parametrize("probe", ["linear", "mlp"])
@pytest.mark.parametrize("mode", ["stream", "memory"])
def test_fast_dev_run(compose_cfg, planted_cache: Path, probe: str, mode: str) -> None:
    cfg = compose_cfg(
        [
            f"data.cache={planted_cache}",
            "debug=fast",
            f"probe={probe}",
            f"loader.mode={mode}",
            "task.inputs=[embedding,attention,head]",
        ]
    )
    run(cfg)
    rows = read_run_results(Path(cfg.paths.output_dir) / "results.json").rows
    # 2 subtasks x (5 layers + 1 all-heads probe + 16 heads)
    assert len(rows) == 2 * (5 + 1 + 16)
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in rows)


def test_tensorboard_logger_writes_events(compose_cfg, planted_cache: Path) -> None:
    cfg = compose_cfg(
        [
            f"data.cache={planted_cache}",
            "logger=tensorboard",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "task.subtasks=[identification]",
            "task.inputs=[attention]",
        ]
    )
    run(cfg)
    assert list((Path(cfg.paths.output_dir) / "tensorboard").rglob("events.out.tfevents.*"))


def test_debug_run_is_marked_debug(compose_cfg, planted_cache: Path, capsys) -> None:
    cfg = compose_cfg([f"data.cache={planted_cache}", "debug=fast", "task.inputs=[attention]"])
    run(cfg)
    rows = read_run_results(Path(cfg.paths.output_dir) / "results.json").rows
    assert rows and all(r["debug"] is True for r in rows)
    assert "DEBUG RUN" in capsys.readouterr().out
    assert "debug" in cfg.tags  # W&B tags, when a W&B logger is configured
