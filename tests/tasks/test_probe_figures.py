"""The per-run figures show what the run asked for: controls, selectivity, MDL, seed CI."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from probes.tasks.figures import MDL_PRIOR, accuracy_by_layer, mdl_by_layer, probe_figures


def _rows(extra: bool) -> list[dict]:
    rows = []
    for k, acc in enumerate((0.6, 0.8)):
        row = {
            "name": f"identification/embedding/layer_{k:02d}",
            "probe": f"layer_{k:02d}",
            "subtask": "identification",
            "kind": "layer",
            "layer": k,
            "test_acc": acc,
            "val_acc": acc + 0.01,
            "chance": 0.5,
            "test_acc_low": acc - 0.05,
            "test_acc_high": acc + 0.05,
        }
        if extra:
            row |= {
                "seeds": [1, 2, 3],
                "test_acc_ci95": 0.02 * (k + 1),
                "control_test_acc": 0.55,
                "selectivity": acc - 0.55,
                "shuffled_test_acc": 0.5,
                "mdl_compression": 1.5 + k,
                "mdl_prior_compression": 1.04,
            }
        rows.append(row)
    return rows


def test_figure_data_carries_controls_selectivity_mdl_and_seed_ci() -> None:
    series, bands, errorbars = accuracy_by_layer(_rows(True))
    mean = "test acc (embedding probe), mean of 3 seeds"
    assert series[mean] == [0.6, 0.8]
    low, high = errorbars[mean]
    np.testing.assert_allclose(low, [0.58, 0.76])
    np.testing.assert_allclose(high, [0.62, 0.84])
    np.testing.assert_allclose(bands[mean], [[0.55, 0.75], [0.65, 0.85]])  # test-set interval
    assert series["control task test acc"] == [0.55, 0.55]
    assert series["selectivity (test - control)"] == pytest.approx([0.05, 0.25])
    assert series["shuffled labels test acc"] == [0.5, 0.5]
    assert mdl_by_layer(_rows(True)) == {
        "compression (embedding probe)": [1.5, 2.5],
        MDL_PRIOR: [1.04, 1.04],  # the label prior's compression, one line for every layer
    }


def test_figure_data_without_comparisons_is_accuracy_only() -> None:
    series, bands, errorbars = accuracy_by_layer(_rows(False))
    assert set(series) == {"test acc (embedding probe)", "val acc (embedding probe)"}
    assert errorbars == {} and set(bands) == {"test acc (embedding probe)"}
    assert mdl_by_layer(_rows(False)) == {}


def test_probe_figures_write_the_mdl_figure_when_asked(tmp_path) -> None:
    reader = SimpleNamespace(layer_names=["emb", "layer 1"])
    with_mdl = probe_figures(_rows(True), reader, tmp_path / "a", "relation")
    assert set(with_mdl) == {"identification_by_layer", "identification_mdl"}
    assert all(path.stat().st_size > 0 for path in with_mdl.values())
    assert set(probe_figures(_rows(False), reader, tmp_path / "b", "relation")) == {
        "identification_by_layer"
    }


def test_linguistic_figures_carry_control_seed_ci_and_mdl(tmp_path, monkeypatch) -> None:
    """SentEval figures: a dashed control curve and seed-CI bars per model, an MDL figure."""
    import probes.tasks.linguistic as linguistic

    drawn = {}
    real = linguistic.plot_by_layer

    def capture(series, names, path, title, **kw):
        drawn[path.stem] = {"series": series, **kw}
        return real(series, names, path, title, **kw)

    monkeypatch.setattr(linguistic, "plot_by_layer", capture)
    rows = [
        {
            "probing_task": "bigram_shift",
            "model": "m",
            "pooling": "cls",
            "role": "model",
            "layer": k,
            "layer_name": f"l{k}",
            "chance": 0.5,
            "test_acc": 0.7 + 0.1 * k,
            "test_acc_ci95": 0.01,
            "seeds": [1, 2],
            "control_test_acc": 0.6,
            "mdl_compression": 1.2 + k,
            "mdl_prior_compression": 1.1,
        }
        for k in range(2)
    ]
    figures = linguistic.linguistic_figures(rows, ("bigram_shift",), tmp_path)
    assert {"bigram_shift_by_layer", "bigram_shift_mdl"} <= set(figures)
    by_layer = drawn["bigram_shift_by_layer"]
    assert by_layer["series"]["m (cls): control task"] == [0.6, 0.6]
    assert "m (cls): control task" in by_layer["dashed"]
    low, high = by_layer["errorbars"]["m (cls)"]
    np.testing.assert_allclose(low, [0.69, 0.79])
    np.testing.assert_allclose(high, [0.71, 0.81])
    assert drawn["bigram_shift_mdl"]["series"] == {"m (cls)": [1.2, 2.2], MDL_PRIOR: [1.1, 1.1]}
    assert drawn["bigram_shift_mdl"]["dashed"] == [MDL_PRIOR]


def test_head_heatmap_ranks_heads_on_validation_and_states_chance(tmp_path, monkeypatch) -> None:
    import probes.tasks.figures as figures

    drawn = {}
    monkeypatch.setattr(
        figures, "plot_layer_head_heatmap", lambda m, path, **kw: drawn.update(m=m, **kw) or path
    )
    rows = [
        {"subtask": "identification", "kind": "head", "layer": a, "head": h, "chance": 0.25,
         "test_acc": 0.1 * a + 0.01 * h, "val_acc": 0.5 - 0.1 * a - 0.01 * h}
        for a in (1, 2) for h in (1, 2, 3)
    ]  # fmt: skip
    reader = SimpleNamespace(layer_names=["emb", "L1", "L2"])
    assert set(probe_figures(rows, reader, tmp_path, "relation")) == {"identification_heads"}
    np.testing.assert_allclose(drawn["m"], [[0.11, 0.12, 0.13], [0.21, 0.22, 0.23]])
    np.testing.assert_allclose(drawn["rank_by"], [[0.39, 0.38, 0.37], [0.29, 0.28, 0.27]])
    assert drawn["chance"] == 0.25 and drawn["layer_names"] == ["L1", "L2"]
    assert "validation" in drawn["title"]
