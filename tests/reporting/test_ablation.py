"""``vlprobe report`` over an ablation whose runs differ in five config keys: short unique
labels, short stable file names, one figure per axis, a settings table, CI bands within
[0, 1] and a warning for fewer than 3 seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes

import vlprobe.reporting.report as report_module
from reporting.test_report import config, probe_rows, read_csv, write_run
from vlprobe.cli import main
from vlprobe.reporting.labels import MAX_FILE_STEM, slug
from vlprobe.reporting.report import build_report

LONG_KEY = "an_option_with_a_rather_long_name_that_used_to_end_up_in_every_file_name"
MLP = {"hidden_dim": 64, "num_hidden_layers": 1}


def setting(probe: str, random_init: bool, lr: float, epochs: int, tie: str) -> dict[str, Any]:
    """One setting of the ablation: the probe family (with its MLP-only keys), random init,
    the probe's learning rate, the epochs and a data option with a long name and value."""
    cfg = config(0, random_init, probe, 64 if probe == "mlp" else 0)
    cfg["probe"]["lr"] = lr
    if probe == "mlp":  # keys a linear probe does not have: None in the linear runs
        cfg["probe"] |= {"dropout": 0.1, "activation": "relu", "num_hidden_layers": 1}
    cfg["trainer"] = {"max_epochs": epochs}
    cfg["data"] |= {"tie_mode": tie, LONG_KEY: f"{tie}-" + "x" * 60}
    return cfg


SETTINGS = [  # family x random init, then one change at a time in the other three keys
    ("linear", False, 0.01, 3, "first"),
    ("mlp", False, 0.01, 3, "first"),
    ("linear", True, 0.01, 3, "first"),
    ("mlp", True, 0.01, 3, "first"),
    ("linear", False, 0.1, 3, "first"),
    ("linear", False, 0.01, 30, "first"),
    ("linear", False, 0.01, 3, "random"),
]


def accuracy(k: int, seed: int) -> list[float]:
    """Per-layer test accuracy of setting ``k`` and ``seed``: seeds 0.3 apart, so a 2-seed
    95% CI (t = 12.7) reaches far past [0, 1]."""
    base = 0.55 + 0.03 * k
    return [base + 0.05 * layer + (0.15 if seed == 2 else -0.15) for layer in range(3)]


@pytest.fixture
def ablation(tmp_path: Path) -> Path:
    for k, (probe, *rest) in enumerate(SETTINGS):
        for seed in (1, 2):
            cfg = setting(probe, *rest) | {"seed": seed}
            rows = probe_rows(accuracy(k, seed), 0.0, probe, MLP if probe == "mlp" else {})
            write_run(tmp_path / "sweep" / f"{k}_{seed}", cfg, rows)
    return tmp_path / "sweep"


def test_report_over_five_varying_keys(
    ablation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    drawn: dict[str, dict[str, Any]] = {}
    real_plot = report_module.plot_by_layer

    def record(series: Any, names: Any, path: Path, title: str, **kw: Any) -> Path:
        drawn[path.stem] = {"series": dict(series), **kw}
        return real_plot(series, names, path, title, **kw)

    filled: list[np.ndarray] = []
    real_fill = Axes.fill_between

    def fill(self: Axes, x: Any, low: Any, high: Any, **kw: Any) -> Any:
        filled.extend([np.asarray(low), np.asarray(high)])
        return real_fill(self, x, low, high, **kw)

    capacities: list[list[str]] = []
    chances: list[Any] = []
    real_complexity = report_module.plot_complexity

    def complexity(probes: Any, *args: Any, **kw: Any) -> Path:
        capacities.append(list(probes))
        chances.append(kw.get("chance"))
        return real_complexity(probes, *args, **kw)

    monkeypatch.setattr(report_module, "plot_complexity", complexity)
    monkeypatch.setattr(report_module, "plot_by_layer", record)
    monkeypatch.setattr(Axes, "fill_between", fill)
    out = tmp_path / "out"
    assert main(["report", str(ablation), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = build_report([ablation], tmp_path / "again")
    agg = report.data
    assert agg is not None
    config_axes = {"probe.lr", "model.random_init", "trainer.max_epochs", "data.tie_mode"}
    assert config_axes | {"probe", f"data.{LONG_KEY}"} <= set(agg.varying)

    # labels: unique, only the keys that tell settings apart, in short form
    labels = [g.label for g in agg.groups]
    assert len(set(labels)) == len(labels) == len(SETTINGS)
    assert "visualbert-minilm [linear] [tie_mode=first] [lr=0.01] [max_epochs=3]" in labels
    assert "visualbert-minilm (random init) [mlp] [tie_mode=first] [lr=0.01] [max_epochs=3]" in (
        labels
    )
    for text in labels:  # no MLP-only key (None for linear), no key implied by another
        assert "none" not in text and "probe." not in text and LONG_KEY not in text

    # file names: short and stable, whatever the labels
    names = [p.name for p in (out / "figures").glob("*.png")]
    assert names and all(len(Path(n).stem) <= MAX_FILE_STEM for n in names)
    assert sorted(names) == sorted(p.name for p in (tmp_path / "again" / "figures").glob("*.png"))

    # one curve per setting (up to MAX_CURVES), and one figure per axis and series
    embedding = "visual_relation__identification_embedding"
    assert len(drawn[f"by_layer__{embedding}"]["series"]) == len(SETTINGS)
    for axis in ("probe", "model.random_init", "probe.lr", "trainer.max_epochs", "data.tie_mode"):
        assert f"{slug('axis', axis, 'visual_relation', 'identification/embedding')}.png" in names
    curves = drawn[slug("axis", "model.random_init", "visual_relation", "identification/embedding")]
    # random init: the mean over its 2 settings (k = 2, 3) of the seed means 0.55 + 0.03 k
    np.testing.assert_allclose(curves["series"]["true (2 settings)"], [0.625, 0.675, 0.725])
    # pre-trained: k = 0, 1, 4, 5, 6, mean k = 3.2
    np.testing.assert_allclose(curves["series"]["false (5 settings)"], [0.646, 0.696, 0.746])
    probe_axis = drawn[f"axis__probe__{embedding}"]["series"]
    assert list(probe_axis) == ["linear (5 settings)", "mlp (2 settings)"]  # smaller first

    # probe complexity per setting of the other axes: pre-trained and random init, each
    # linear vs MLP at lr 0.01 (lr 0.1 is an axis of its own, not a third probe)
    assert capacities == [["linear", "mlp"]] * 2 * 4  # 2 reports x 2 settings x 2 series
    assert chances == [0.5] * len(capacities)  # the rows' chance: each figure's reference
    assert len([n for n in names if n.startswith("complexity__")]) == 4

    # CI bands over 2 seeds reach [-3.2, 4.6]: every band drawn stays within [0, 1]
    assert filled and all(np.all((b >= 0) & (b <= 1) | np.isnan(b)) for b in filled)

    # a table of all settings, and the seed warning on the console and in the report
    settings = read_csv(report.tables["settings"])
    assert len(settings) == len(SETTINGS) and {r["n_seeds"] for r in settings} == {"2"}
    assert {r["probe.lr"] for r in settings} == {"0.01", "0.1"}
    text = report.markdown.read_text()
    assert "## Settings" in text and f"| group | {agg.varying[0]} |" in text
    warning = "7 setting(s) have fewer than 3 seeds (as few as 2)"
    assert warning in printed and warning in text
