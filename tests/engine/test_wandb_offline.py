"""The default logger: an offline W&B run in the run folder a dashboard can use: few history
keys whatever the number of probes, tables, charts, a summary per subtask, artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probes.run import run
from vlprobe.cache.reader import CacheReader
from vlprobe.reporting.run_results import read_run_results
from vlprobe.reporting.wandb_artifacts import cache_fingerprint
from vlprobe.reporting.wandb_offline import read_offline_run


def test_offline_wandb_run_holds_tables_charts_summary_artifacts(
    compose_cfg, planted_cache: Path, capsys
) -> None:
    cfg = compose_cfg(
        [
            f"data.cache={planted_cache}",
            "trainer=cpu",
            "trainer.max_epochs=2",
            "task.subtasks=[identification]",
            "task.inputs=[embedding,head]",
            "seed=3",
        ]
    )
    assert cfg.logger.wandb.offline is True
    run(cfg)
    out = Path(cfg.paths.output_dir)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one offline W&B run per job"
    logged = read_offline_run(runs[0])
    rows = read_run_results(out / "results.json").rows
    # 5 embedding layers + 4 x 4 heads = 21 probes; no key per probe
    assert len(rows) == 21
    keys = logged.history_keys()
    assert len(keys) <= 40, sorted(keys)
    assert not [k for k in keys if "L01H03" in k or "layer_02" in k]
    assert {"results", "tables/identification", "train/loss"} <= keys
    assert {f"figures/{k}" for k in ("identification_by_layer", "identification_heads")} <= keys
    assert "lbfgs/identification/embedding" in keys  # the penalty search: one table per input
    (table,) = (runs[0] / "files" / "media" / "table" / "lbfgs" / "identification").glob(
        "embedding*.json"
    )
    path = json.loads(table.read_text())
    stop = path["columns"].index("lbfgs_stop")  # how each penalty's solve ended
    assert {r[stop] for r in path["data"]} <= {"gtol", "ftol", "line_search", "max_iter"}
    summary = logged.summary
    best = max(rows, key=lambda r: r["val_acc"])
    assert summary["summary/identification/best_val_acc"] == pytest.approx(best["val_acc"])
    assert summary["summary/identification/test_acc"] == pytest.approx(best["test_acc"])
    assert summary["best/identification/test_acc"] > 0.9  # the task's own summary
    # names, tags, job type: what was changed, what a dashboard filters on
    assert logged.name == f"visual_relation data.cache={planted_cache.name} trainer=cpu " + (
        "trainer.max_epochs=2 task.subtasks=[identification] task.inputs=[embedding,head] seed=3"
    )
    assert logged.job_type == "visual_relation"
    assert {"visual_relation", "visualbert-minilm", "linear", "demo"} <= set(logged.tags)
    assert "debug" not in logged.tags
    # artifacts: the results with the figures, and the cache read, named by its fingerprint
    by_type = {a["type"]: a for a in logged.artifacts}
    assert {"results.json", "results.csv", "identification_heads.png"} <= set(
        by_type["results"]["entries"]
    )
    reader = CacheReader(planted_cache)
    digest, _ = cache_fingerprint(reader)
    reader.close()
    cache = by_type["cache"]
    assert cache["metadata"]["fingerprint"] == digest and digest[:16] in cache["name"]
    assert list(cache["entries"].values()) == [planted_cache.resolve().as_uri()]
    assert logged.config["task"]["name"] == "visual_relation"  # the resolved run config
    printed = capsys.readouterr().out
    assert "wandb sync" in printed and str(runs[0]) in printed
