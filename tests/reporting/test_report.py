"""``vlprobe report``: discovery, seed statistics, tables, comparisons, figures and the CLI,
on small run folders written by hand (results.json + .hydra/config.yaml)."""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats

from vlprobe.cli import main
from vlprobe.reporting.aggregate import (
    aggregate,
    column_stat,
    find_runs,
    load_run,
    load_runs,
    series_of,
    welch_difference,
)
from vlprobe.reporting.identity import ProbeId
from vlprobe.reporting.report import build_report

# t(0.975, 2) * 0.1 / sqrt(3): the 95% CI half-width of [0.6, 0.7, 0.8]
HALF_3 = 0.2484138
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# test accuracy of layer_00..02 per seed; val accuracy makes layer_02 the best probe
PRETRAINED = {1: [0.50, 0.55, 0.6], 2: [0.52, 0.60, 0.7], 3: [0.54, 0.65, 0.8]}
RANDOM_INIT = {1: [0.50, 0.50, 0.5], 2: [0.50, 0.52, 0.5], 3: [0.50, 0.54, 0.6]}


def config(seed: int, random_init: bool = False, probe: str = "linear", hidden: int = 0) -> dict:
    family = {"linear": "LinearProbe", "mlp": "MLPProbe", "lowrank": "LowRankProbe"}[probe]
    path = f"probes.families.{family}"
    probe_cfg: dict[str, Any] = {"family": {"_target_": "hydra.utils.get_class", "path": path}}
    probe_cfg["lr"] = 0.01
    if hidden:
        probe_cfg["hidden_dim"] = hidden
    return {
        "seed": seed,
        "task": {"name": "visual_relation"},
        "model": {"name": "visualbert-minilm", "random_init": random_init},
        "data": {"mismatched": False, "feature_dim": 8},
        "probe": probe_cfg,
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},  # unresolvable outside Hydra
    }


def probe_rows(
    layer_acc: list[float],
    offset: float = 0.0,
    family: str = "linear",
    capacity: dict | None = None,
    **extra: Any,
) -> list[dict]:
    """Embedding probes per layer, a 2 x 2 grid of head probes and the all-heads probe, with
    their identity as fields (as the engine stamps them)."""
    rows = []
    for i, acc in enumerate(layer_acc):
        rows.append(
            {
                "name": f"identification/embedding/layer_{i:02d}",
                "series": "identification/embedding",
                **ProbeId("layer", i).as_fields(),
                "val_acc": acc + 0.01,
                "test_acc": acc,
                "chance": 0.5,
                "num_params": 10,
                **extra,
            }
        )
    for a in (1, 2):
        for h in (1, 2):
            acc = 0.5 + 0.1 * a + 0.01 * h + offset
            probe = ProbeId("head", a, h)
            rows.append(
                {"name": f"identification/head/{probe.name}", **probe.as_fields(), "val_acc": acc}
            )
            rows[-1]["series"] = "identification/head"
    rows.append({"name": "identification/attention/all_heads", **ProbeId("all_heads").as_fields()})
    rows[-1] |= {"val_acc": 0.6 + offset, "series": "identification/attention"}
    for row in rows[len(layer_acc) :]:
        row |= {"test_acc": row["val_acc"], "chance": 0.5}
    for row in rows:
        row |= {"task": "visual_relation", "subtask": "identification", "n_test": 200}
        row |= {"probe": ProbeId.from_row(row).name, "family": family}
        row["capacity"] = dict(capacity or {})
    return rows


def write_run(folder: Path, cfg: dict, rows: list[dict]) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "results.json").write_text(json.dumps(rows))
    return folder


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A multirun of 3 seeds x (pre-trained, random init), as Hydra lays it out."""
    sweep = tmp_path / "logs" / "visual_relation" / "multiruns" / "2024-01-01_00-00-00"
    job = 0
    for random_init, table in ((False, PRETRAINED), (True, RANDOM_INIT)):
        for seed, accs in table.items():
            rows = probe_rows(accs, offset=-0.05 * random_init)
            write_run(sweep / str(job), config(seed, random_init), rows)
            job += 1
    return tmp_path / "logs"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- discovery
def test_discovery_of_multirun_logs_and_single_runs(logs: Path, tmp_path: Path) -> None:
    sweep = next(logs.glob("visual_relation/multiruns/*"))
    jobs = find_runs([sweep])
    assert [p.name for p in jobs] == ["0", "1", "2", "3", "4", "5"]
    assert find_runs([logs]) == jobs  # a parent folder is searched recursively
    assert find_runs([sweep / "3"]) == [(sweep / "3").resolve()]
    assert find_runs([sweep / "3", sweep]) == [jobs[3], *jobs[:3], *jobs[4:]]  # no duplicates
    for n in (2, 10, 1):  # job folders in numeric order
        write_run(tmp_path / "many" / str(n), config(n), probe_rows([0.5]))
    assert [p.name for p in find_runs([tmp_path / "many"])] == ["1", "2", "10"]
    with pytest.raises(FileNotFoundError):
        load_runs([tmp_path / "many" / "nothing-here"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no runs found"):
        load_runs([tmp_path / "empty"])


def test_run_identity_from_the_hydra_config(logs: Path) -> None:
    run = load_run(next(logs.glob("visual_relation/multiruns/*/4")))
    assert run.get("model.random_init") is True and run.seed == 2
    assert run.get("paths.output_dir") is None  # ${hydra:...} cannot resolve here
    assert run.get("probe.rank") is None and run.task == "visual_relation"


# ---------------------------------------------------------------------------- statistics
def test_seed_aggregation_mean_std_and_t_interval(logs: Path) -> None:
    agg = aggregate(load_runs([logs])[0])
    assert [g.label for g in agg.groups] == [
        "visualbert-minilm",
        "visualbert-minilm (random init)",
    ]
    assert agg.varying == ["model.random_init"]
    (cell,) = agg.select(group=agg.groups[0], series="identification/embedding", probe="layer_02")
    stat = cell.get("test_acc")
    assert stat.mean == pytest.approx(0.7)
    assert stat.std == pytest.approx(0.1)
    assert stat.ci95 == pytest.approx(HALF_3, abs=1e-6)
    assert stat.n == 3 and sorted(cell.seeds) == [1, 2, 3]
    assert cell.get("chance").mean == pytest.approx(0.5)


def test_within_run_seed_statistics_are_kept_or_pooled() -> None:
    given = {"test_acc": 0.7, "test_acc_std": 0.1, "test_acc_ci95": HALF_3, "seeds": [1, 2, 3]}
    stat = column_stat([given], "test_acc")
    assert (stat.mean, stat.std, stat.ci95, stat.n) == (0.7, 0.1, HALF_3, 3)
    # two runs that each trained seeds in-run: all their per-seed values are pooled
    a = {"test_acc": 0.65, "test_acc_per_seed": [0.6, 0.7]}
    b = {"test_acc": 0.8, "test_acc_per_seed": [0.8]}
    pooled = column_stat([a, b], "test_acc")
    assert pooled.mean == pytest.approx(0.7) and pooled.n == 3
    assert pooled.ci95 == pytest.approx(HALF_3, abs=1e-6)
    single = column_stat([{"test_acc": 0.6}, {"test_acc": None}], "test_acc")
    assert single.n == 1 and math.isnan(single.ci95)  # missing values are dropped


def test_welch_difference_by_hand() -> None:
    a = column_stat([{"x": v} for v in (0.6, 0.7, 0.8)], "x")
    b = column_stat([{"x": v} for v in (0.5, 0.5, 0.6)], "x")
    diff = welch_difference(a, b)
    va, vb = 0.1**2 / 3, np.var([0.5, 0.5, 0.6], ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    assert diff.mean == pytest.approx(0.7 - 1.6 / 3)
    assert diff.ci95 == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(va + vb))


def test_identity_is_read_from_fields_never_from_names(tmp_path: Path) -> None:
    assert series_of({"series": "identification/head", "stream": "vision"}) == (
        "vision/identification/head"
    )
    assert series_of({"name": "identification/head/L01H03"}) == ""  # the name is display only
    rows = probe_rows([0.5, 0.6, 0.7])
    for row in rows:  # names that say nothing: the report must not need them
        row["name"] = row["probe"] = "?"
    write_run(tmp_path / "run", config(0), rows)
    report = build_report([tmp_path / "run"], tmp_path / "out")
    best = {r["series"]: r for r in report.summary}
    assert best["identification/embedding"]["best_probe"] == "layer_02"
    assert best["identification/head"]["best_probe"] == "L02H02"
    assert best["identification/attention"]["best_probe"] == "all_heads"


def test_runs_written_before_typed_rows_are_skipped(tmp_path: Path, capsys) -> None:
    write_run(tmp_path / "runs" / "new", config(1), probe_rows([0.5, 0.6]))
    old = [{k: v for k, v in r.items() if k not in ("kind", "family")} for r in probe_rows([0.9])]
    write_run(tmp_path / "runs" / "old", config(2), old)
    runs, skipped = load_runs([tmp_path / "runs"])
    assert [r.path.name for r in runs] == ["new"]
    (skip,) = skipped
    assert skip.path.name == "old" and "re-run it" in skip.reason and "kind" in skip.reason
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert "skipped 1 run(s):" in capsys.readouterr().out


def test_streams_of_one_run_are_reported_apart(tmp_path: Path) -> None:
    """LXMERT rows of two streams share probe names; each stream is its own series."""
    rows = [r | {"stream": "cross"} for r in probe_rows([0.5, 0.6, 0.7])]
    rows += [r | {"stream": "vision"} for r in probe_rows([0.8, 0.9], offset=0.2)]
    cfg = config(0) | {"model": {"name": "lxmert", "random_init": False, "stream": "all"}}
    write_run(tmp_path / "run", cfg, rows)
    report = build_report([tmp_path / "run"], tmp_path / "out")
    best = {r["series"]: r for r in read_csv(report.csv)}
    assert best["cross/identification/embedding"]["best_probe"] == "layer_02"
    assert float(best["cross/identification/embedding"]["mean"]) == pytest.approx(0.7)
    assert best["vision/identification/embedding"]["best_probe"] == "layer_01"
    assert float(best["vision/identification/embedding"]["mean"]) == pytest.approx(0.9)
    assert float(best["vision/identification/head"]["mean"]) == pytest.approx(0.92)
    assert "| visual_relation | vision/identification/embedding |" in report.markdown.read_text()


# ---------------------------------------------------------------------------- report files
def test_report_tables_markdown_and_figures(logs: Path, tmp_path: Path) -> None:
    report = build_report([logs], tmp_path / "out")
    rows = {(r["series"], r["group"]): r for r in read_csv(report.csv)}
    best = rows[("identification/embedding", "visualbert-minilm")]
    assert best["best_probe"] == "layer_02" and best["selected_by"] == "val_acc"
    assert float(best["mean"]) == pytest.approx(0.7)
    assert float(best["ci95"]) == pytest.approx(HALF_3, abs=1e-6)
    assert best["n_seeds"] == "3"
    heads = rows[("identification/head", "visualbert-minilm (random init)")]
    assert heads["best_probe"] == "L02H02" and float(heads["mean"]) == pytest.approx(0.67)
    probes = read_csv(report.tables["probes"])
    head = next(r for r in probes if r["probe"] == "L02H01")
    assert (head["kind"], head["layer"], head["head"]) == ("head", "2", "1")

    text = report.markdown.read_text()
    assert "| task | series | visualbert-minilm | visualbert-minilm (random init) |" in text
    assert "| visual_relation | identification/embedding | 0.700 ± 0.248 (layer_02, n=3) |" in text
    assert "## Comparison by model.random_init" in text
    for key in (
        "by_layer__visual_relation__identification_embedding",
        "heads__visual_relation__identification_head__visualbert-minilm",
        "heads__visual_relation__identification_head__visualbert-minilm_random_init",
    ):
        path = report.figures[key]
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert f"]({path.relative_to(report.out).as_posix()})" in text
    assert len(read_csv(report.tables["probes"])) == 2 * (3 + 4 + 1)


def test_comparison_table_differences(logs: Path, tmp_path: Path) -> None:
    report = build_report([logs], tmp_path / "out", compare_by=["model.random_init"])
    rows = {r["probe"]: r for r in read_csv(report.tables["comparisons"])}
    layer2 = rows["layer_02"]
    assert layer2["a"] == "visualbert-minilm" and layer2["b"].endswith("(random init)")
    assert float(layer2["diff"]) == pytest.approx(0.7 - 1.6 / 3)
    assert layer2["excludes_zero"] == "False"  # 3 seeds cannot separate these two
    assert float(rows["all_heads"]["diff"]) == pytest.approx(0.05)
    assert float(rows["L01H01"]["diff"]) == pytest.approx(0.05)
    assert float(rows["all_heads"]["diff_ci95"]) == 0.0  # identical seeds: no spread
    text = report.markdown.read_text()
    assert "| visual_relation | identification/embedding | layer_02 | 0.700 ± 0.248 |" in text
    assert "L01H01" not in text.split("## Comparison")[1].split("## Runs")[0]  # heads: CSV only


def test_controls_mdl_and_probe_complexity(tmp_path: Path) -> None:
    extra = {"control_test_acc": 0.5, "mdl_compression": 1.5, "mdl_compression_over_prior": 1.2}
    for job, (probe, hidden, seed) in enumerate(
        [("linear", 0, 1), ("linear", 0, 2), ("mlp", 64, 1), ("mlp", 256, 1)]
    ):
        capacity = {"hidden_dim": hidden, "num_hidden_layers": 1} if hidden else {}
        rows = probe_rows([0.6, 0.7 + 0.02 * seed + hidden / 1000], 0, probe, capacity, **extra)
        for row in rows:
            if "control_test_acc" in row:
                row["selectivity"] = row["test_acc"] - row["control_test_acc"]
        write_run(tmp_path / "sweep" / str(job), config(seed, False, probe, hidden), rows)
    report = build_report([tmp_path / "sweep"], tmp_path / "out")
    labels = [g.label for g in report.data.groups]
    assert labels == [  # the probe from the rows' family and capacity; probe.* keys implied
        "visualbert-minilm [linear]",
        "visualbert-minilm [mlp hidden_dim=64]",
        "visualbert-minilm [mlp hidden_dim=256]",
    ]
    assert report.figures[
        "complexity__visual_relation__identification_embedding__visualbert-minilm"
    ]
    best = {(r["series"], r["group"]): r for r in report.summary}
    linear = best[("identification/embedding", "visualbert-minilm [linear]")]
    assert linear["mean"] == pytest.approx(0.73) and linear["n_seeds"] == 2
    assert linear["selectivity"] == pytest.approx(0.23)
    assert linear["mdl_compression"] == pytest.approx(1.5)
    assert linear["mdl_compression_over_prior"] == pytest.approx(1.2)
    assert "MDL over prior" in report.markdown.read_text()
    assert "| 0.230 ± " in report.markdown.read_text()
    pairs = {(r["a"], r["b"]) for r in read_csv(report.tables["comparisons"])}
    assert (
        "visualbert-minilm [mlp hidden_dim=64]",
        "visualbert-minilm [mlp hidden_dim=256]",
    ) in pairs
    assert len(pairs) == 3  # probe kind and size count as one key: every pair of probes


def test_training_free_task_uses_its_own_measure(tmp_path: Path) -> None:
    rows = [
        {"task": "cross_modal_alignment", "name": f"L{a:02d}H{h:02d}",
         **ProbeId("head", a, h).as_fields(), "family": "none", "capacity": {},
         "alignment_acc": 0.1 * a + 0.01 * h, "chance": 0.2}
        for a in (1, 2, 3) for h in (1, 2)
    ]  # fmt: skip
    cfg = config(0) | {"task": {"name": "cross_modal_alignment"}}
    write_run(tmp_path / "run", cfg, rows)
    report = build_report([tmp_path / "run"], tmp_path / "out")
    assert report.data.metrics == {"cross_modal_alignment": "alignment_acc"}
    (best,) = report.summary
    assert best["best_probe"] == "L03H02" and best["mean"] == pytest.approx(0.32)
    assert any(k.startswith("heads__cross_modal_alignment") for k in report.figures)


def test_text_baseline_rows_form_their_own_group(tmp_path: Path) -> None:
    rows = []
    for role, model, acc in (("model", "visualbert-minilm", 0.7), ("baseline", "text", 0.8)):
        for layer in (0, 1):
            rows.append(
                {"task": "linguistic", "name": f"{role}/past_present/cls/layer_{layer:02d}",
                 "series": "past_present/cls", **ProbeId("layer", layer).as_fields(),
                 "family": "linear", "capacity": {}, "model": model, "role": role,
                 "val_acc": acc + layer / 10, "test_acc": acc + layer / 10, "chance": 0.5}
            )  # fmt: skip
    write_run(tmp_path / "run", config(0) | {"task": {"name": "linguistic/all"}}, rows)
    agg = aggregate(load_runs([tmp_path / "run"])[0])
    assert [g.label for g in agg.groups] == [
        "visualbert-minilm",
        "text (baseline of visualbert-minilm)",
    ]
    assert agg.series() == [("linguistic", "past_present/cls")]


# ---------------------------------------------------------------------------- W&B and CLI
def _write_wandb_log(path: Path, records: list[bytes]) -> None:
    """A minimal run-*.wandb log: header, then FULL records (crc, length, type, payload)."""
    data = b":W&B" + b"\xbe\xe1\x00"
    for payload in records:
        data += b"\x00\x00\x00\x00" + struct.pack("<HB", len(payload), 1) + payload
    path.write_bytes(data)


def _table_record(run_dir: Path, rows: list[dict]) -> bytes:
    """The run's logged ``results`` table: its file under ``files/`` and the summary entry."""
    from wandb.proto import wandb_internal_pb2 as pb

    ref = "media/table/results_0_abc.table.json"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    table = {"columns": columns, "data": [[r.get(c) for c in columns] for r in rows]}
    (run_dir / "files" / ref).parent.mkdir(parents=True)
    (run_dir / "files" / ref).write_text(json.dumps(table))
    record = pb.Record()
    record.summary.update.add(key="results", value_json=json.dumps({"path": ref}))
    return record.SerializeToString()


def test_offline_wandb_run_without_results_json(tmp_path: Path) -> None:
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = tmp_path / "logs" / "run" / "wandb" / "offline-run-20240101_000000-abc"
    run_dir.mkdir(parents=True)
    cfg = pb.Record()
    for key, value in config(7, random_init=True).items():
        cfg.config.update.add(key=key, value_json=json.dumps(value))
    history = pb.Record()  # summary metrics alone carry no probe identity
    history.history.item.add(key="test/acc/identification/embedding/layer_00", value_json="0.5")
    records = [cfg.SerializeToString(), history.SerializeToString()]
    _write_wandb_log(run_dir / "run-abc.wandb", records)
    assert find_runs([tmp_path / "logs"]) == [run_dir.resolve()]
    with pytest.raises(ValueError, match="no logged results table"):
        load_run(run_dir)

    rows = probe_rows([0.55, 0.75], control_test_acc=0.5)
    _write_wandb_log(run_dir / "run-abc.wandb", [*records, _table_record(run_dir, rows)])
    run = load_run(run_dir)
    assert run.source == "W&B results table" and run.seed == 7 and run.get("model.random_init")
    by_probe = {r["probe"]: r for r in run.rows}
    assert by_probe["layer_01"]["test_acc"] == 0.75 and by_probe["L02H01"]["head"] == 1
    assert by_probe["layer_01"]["kind"] == "layer" and by_probe["layer_01"]["family"] == "linear"
    write_run(run_dir.parent.parent, config(7), probe_rows([0.5]))  # results.json wins
    assert find_runs([tmp_path / "logs"]) == [run_dir.parent.parent.resolve()]


def test_cli_report(logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["report", str(logs), "--out", str(out), "--compare-by", "model.random_init"]) == 0
    printed = capsys.readouterr().out
    assert "0.700 ± 0.248 (layer_02, n=3)" in printed and str(out / "report.md") in printed
    for name in ("report.md", "report.csv", "probes.csv", "comparisons.csv"):
        assert (out / name).is_file(), name
    assert any((out / "figures").glob("by_layer__*.png"))
    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert main(["report", str(logs), "--out", str(out), "--compare-by", "model.nmae"]) == 2
    assert "model.nmae" in capsys.readouterr().err


# ---------------------------------------------------------------------------- grouping
def _wandb_run(folder: Path, seed: int, exit_code: int | None) -> Path:
    """An orphan offline W&B run (no results.json beside it) with or without an exit record."""
    from wandb.proto import wandb_internal_pb2 as pb

    folder.mkdir(parents=True)
    cfg = pb.Record()
    for key, value in config(seed).items():
        cfg.config.update.add(key=key, value_json=json.dumps(value))
    records = [cfg.SerializeToString(), _table_record(folder, probe_rows([0.9]))]
    if exit_code is not None:
        end = pb.Record()
        end.exit.exit_code = exit_code
        records.append(end.SerializeToString())
    _write_wandb_log(folder / "run-x.wandb", records)
    return folder


def test_groups_by_full_config_and_names_the_differing_keys(tmp_path: Path) -> None:
    for seed in (1, 2):
        for epochs in (3, 30):
            cfg = config(seed) | {"trainer": {"max_epochs": epochs}}
            cfg["task"] |= {"seed": "${seed}"}  # follows the seed: not an identity key
            cfg["logger"] = {"csv": {"save_dir": f"/somewhere/{seed}"}}  # logging: ignored
            cfg["threads"] = seed  # torch threads: how it ran, not what it measured
            write_run(tmp_path / "runs" / f"e{epochs}s{seed}", cfg, probe_rows([0.5 + seed / 10]))
    cfg = config(1)
    cfg["data"] |= {"name": "real"}
    write_run(tmp_path / "runs" / "real", cfg | {"trainer": {"max_epochs": 3}}, probe_rows([0.9]))
    runs, skipped = load_runs([tmp_path / "runs"])
    agg = aggregate(runs)
    assert not skipped and len(agg.groups) == 3
    assert agg.varying == ["data.name", "trainer.max_epochs"]
    labels = sorted(g.label for g in agg.groups)
    assert labels == [
        "visualbert-minilm [name=none] [max_epochs=30]",  # short keys, unique labels
        "visualbert-minilm [name=none] [max_epochs=3]",
        "visualbert-minilm [name=real] [max_epochs=3]",
    ]
    [cell] = [c for c in agg.select(probe="layer_00") if "max_epochs=30" in c.group.label]
    assert cell.get("test_acc").n == 2 and cell.get("test_acc").mean == pytest.approx(0.65)


def test_duplicate_seeds_are_refused(tmp_path: Path) -> None:
    write_run(tmp_path / "runs" / "a", config(1), probe_rows([0.5]))
    write_run(tmp_path / "runs" / "b", config(1), probe_rows([0.6]))
    with pytest.raises(ValueError, match="same config and seed 1"):
        aggregate(load_runs([tmp_path / "runs"])[0])
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 2


def test_killed_failed_and_debug_runs_are_skipped_and_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    write_run(logs / "good", config(1), probe_rows([0.5]))
    write_run(logs / "debug", config(2) | {"trainer": {"fast_dev_run": True}}, probe_rows([0.9]))
    killed = _wandb_run(logs / "killed" / "wandb" / "offline-run-1-k", seed=3, exit_code=None)
    failed = _wandb_run(logs / "failed" / "wandb" / "offline-run-1-f", seed=4, exit_code=1)
    done = _wandb_run(logs / "done" / "wandb" / "offline-run-1-d", seed=5, exit_code=0)
    runs, skipped = load_runs([logs])
    assert sorted(r.path for r in runs) == sorted([(logs / "good").resolve(), done.resolve()])
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons[killed.name].startswith("killed")
    assert reasons[failed.name] == "failed: W&B exit code 1"
    assert reasons["debug"].startswith("debug run")
    out = tmp_path / "out"
    assert main(["report", str(logs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped 3 run(s):" in printed and "killed" in printed
    assert "## Skipped runs" in (out / "report.md").read_text()


def test_debug_runs_are_skipped_with_a_listed_warning(logs: Path, tmp_path: Path, caplog) -> None:
    sweep = next(logs.glob("visual_relation/multiruns/*"))
    marked = write_run(
        tmp_path / "debug", config(9), [{**r, "debug": True} for r in probe_rows([0.9])]
    )
    old = write_run(
        tmp_path / "old-debug", {**config(8), "trainer": {"fast_dev_run": True}}, probe_rows([0.9])
    )
    with caplog.at_level("WARNING", logger="vlprobe.reporting.aggregate"):
        runs, skipped = load_runs([sweep, marked, old])
    assert len(runs) == 6 and {r.seed for r in runs} == {1, 2, 3}
    assert sorted(s.path for s in skipped) == sorted([marked.resolve(), old.resolve()])
    warnings = [r.getMessage() for r in caplog.records if "debug run" in r.getMessage()]
    assert len(warnings) == 2 and all("skipping" in w for w in warnings)
    with pytest.raises(FileNotFoundError, match="no runs found"):
        load_runs([marked])
