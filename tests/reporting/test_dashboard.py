"""``vlprobe dashboard``: panels from real offline runs, naming only keys the runs logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlprobe.cli import main
from vlprobe.dashboard import build_panels, build_workspace, find_wandb_runs, swept_keys
from vlprobe.reporting.wandb_offline import read_offline_run, wait_for_exit
from vlprobe.reporting.wandb_publish import publish_rows


def _rows(acc: float) -> list[dict]:
    """Typed rows: 2 subtasks x (4 embedding layers + 2 x 2 heads)."""
    out = []
    for subtask in ("identification", "classification"):
        for layer in range(4):
            row = {"task": "visual_relation", "subtask": subtask, "kind": "embedding"}
            out.append(row | {"layer": layer, "head": None, "stream": None})
        for layer, head in ((1, 0), (1, 1), (2, 0), (2, 1)):
            row = {"task": "visual_relation", "subtask": subtask, "kind": "head"}
            out.append(row | {"layer": layer, "head": head, "stream": None})
    for i, row in enumerate(out):
        row |= {"val_acc": acc + 0.01 * i, "test_acc": acc, "chance": 0.5, "family": "linear"}
    return out


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A probe family x seed sweep: 4 offline runs, as a multirun's numbered job folders, with
    the config and the published rows train_probe.py gives them."""
    import wandb

    jobs = [(family, seed) for family in ("LinearProbe", "MLPProbe") for seed in (1, 2)]
    for job, (family, seed) in enumerate(jobs):
        folder = tmp_path / "sweep" / str(job)
        config = {
            "task": {"name": "visual_relation"},
            "model": {"name": "visualbert-minilm"},
            "probe": {"family": {"path": f"probes.families.{family}"}, "lr": 0.01 * (job + 1)},
            "seed": seed,
            "paths": {"output_dir": str(folder)},
        }
        run_ = wandb.init(project="p", dir=folder, mode="offline", config=config)
        publish_rows(run_, _rows(0.6 + 0.1 * job), folder)
        run_dir = Path(run_.dir).parent
        run_.finish()
        assert wait_for_exit(run_dir)
    return tmp_path / "sweep"


def test_swept_keys_name_what_varied_once() -> None:
    linear = {"probe.family.path": "L", "probe.lr": 0.01, "seed": 1, "model.name": "m"}
    mlp = {"probe.family.path": "M", "probe.lr": 0.003, "probe.hidden_dim": 256, "seed": 2}
    mlp["model.name"] = "m"
    paths = {"trainer.default_root_dir": "/a/0", "logger.wandb.name": "x"}
    linear["task.sample_seed"], mlp["task.sample_seed"] = 1, 2  # ${seed}, resolved
    assert swept_keys([linear | paths, mlp | paths | {"trainer.default_root_dir": "/a/1"}]) == [
        "probe.family.path",
        "seed",
    ]
    assert swept_keys([{"seed": 1, "model.name": "a"}, {"seed": 2, "model.name": "b"}]) == [
        "model.name",
        "seed",
    ]
    # within one family its arguments are what varied; a key some runs lack is no axis
    assert swept_keys([{"probe.hidden_dim": 64, "num_probes": 5}, {"probe.hidden_dim": 256}]) == [
        "probe.hidden_dim"
    ]


def test_dry_run_panels_name_only_logged_keys(sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "dashboard.json"
    assert main(["dashboard", str(sweep), "--project", "p", "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and str(out.with_suffix(".png")) in printed
    assert out.with_suffix(".png").stat().st_size > 10_000  # the preview of what panels draw
    panels = json.loads(out.read_text())["panels"]
    runs = [read_offline_run(p) for p in find_wandb_runs([sweep])]
    assert len(runs) == 4
    # one bar chart per subtask and one line chart per subtask and kind, per swept key
    assert [(p["kind"], p["groupby"]) for p in panels[:3]] == [
        ("bar", "probe.family.path"),
        ("bar", "probe.family.path"),
        ("line", "probe.family.path"),
    ]
    assert len(panels) == 2 * (2 + 2) and {p["groupby"] for p in panels} == {
        "probe.family.path",
        "seed",
    }
    assert {p["section"] for p in panels} == {"visual_relation"}
    for panel in panels:
        assert panel["title"] and panel["keys"]
        for run_ in runs:
            logged = run_.history_keys() | set(run_.summary)
            for key in [*panel["keys"], *([panel["x"]] if panel["x"] else [])]:
                assert key in logged, (panel["title"], key)
    lines = [p for p in panels if p["kind"] == "line" and p["groupby"] == "seed"]
    assert [p["keys"] for p in lines] == [  # chance: the reference line of each panel
        ["by_layer/classification/embedding/test_acc", "by_layer/classification/embedding/chance"],
        ["by_layer/identification/embedding/test_acc", "by_layer/identification/embedding/chance"],
    ]
    assert {p["x"] for p in lines} == {"layer"}
    assert {tuple(p["keys"]) for p in panels if p["kind"] == "bar"} == {
        tuple(f"summary/{subtask}/{m}" for m in ("best_val_acc", "test_acc", "chance"))
        for subtask in ("identification", "classification")
    }
    # the same panels as a wandb-workspaces workspace (built, not saved)
    workspace = build_workspace(build_panels(runs), "p", "e", "sweep")
    (section,) = workspace.sections
    assert section.name == "visual_relation" and len(section.panels) == len(panels)
    assert workspace._to_model() is not None


def test_a_folder_without_runs_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["dashboard", str(tmp_path), "--project", "p", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vlprobe dashboard: error: no offline W&B run") and "\n" not in err


def test_preview_averages_each_layer_over_the_runs_that_probed_it() -> None:
    """``probing.layers=[0,3],[0,6]`` swept: a group holds runs of both; its curve spans 0, 3
    and 6 (W&B's grouped line plot does the same), not only the layers all runs share."""
    from vlprobe.dashboard import _layer_band

    layers, mean, low, high = _layer_band([{0: 0.9, 3: 0.8}, {0: 0.7, 6: 0.6}])
    assert layers == [0, 3, 6]
    assert mean.tolist() == pytest.approx([0.8, 0.8, 0.6])
    assert low.tolist() == pytest.approx([0.7, 0.8, 0.6])
    assert high.tolist() == pytest.approx([0.9, 0.8, 0.6])


def test_preview_option_draws_the_panels_to_the_png_given(sweep: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "d.json", tmp_path / "img" / "preview.png"
    args = ["dashboard", str(sweep), "--project", "p", "--dry-run", "--out", str(out)]
    assert main([*args, "--preview", str(png)]) == 0
    assert png.stat().st_size > 10_000 and not out.with_suffix(".png").exists()
