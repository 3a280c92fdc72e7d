import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from vlprobe.reporting.figures import plot_by_layer, plot_layer_head_heatmap, plot_text_vs_image


def _assert_png(path):
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size[0] > 0 and img.size[1] > 0


def test_plot_by_layer(tmp_path):
    names = ["emb", "L01", "L02", "L03"]
    path = plot_by_layer(
        {"cls": [0.3, 0.5, 0.7, 0.6], "mean": [0.3, 0.6, 0.8, 0.7]},
        names,
        tmp_path / "sub" / "by_layer.png",
        "SentLen",
        chance=1 / 6,
        bands={"cls": ([0.25, 0.45, 0.65, 0.55], [0.35, 0.55, 0.75, 0.65])},
    )
    _assert_png(path)
    with pytest.raises(ValueError):
        plot_by_layer({"cls": [0.1]}, names, tmp_path / "bad.png", "bad")


def test_plot_by_layer_joins_a_series_over_the_layers_it_has(tmp_path, monkeypatch):
    """Groups that probed different layers ([0, 6] beside [0, 3]) share one axis; a group's
    NaN at a layer it did not probe must not cut its line (and band) into single dots."""
    from vlprobe.reporting import figures

    drawn = {}

    def keep(fig, path):
        ax = fig.axes[0]
        drawn["lines"] = {line.get_label(): line.get_xydata().tolist() for line in ax.lines}
        drawn["bands"] = [c.get_paths()[0].vertices for c in ax.collections]
        return path

    monkeypatch.setattr(figures, "save_figure", keep)
    nan = float("nan")
    figures.plot_by_layer(
        {"[0,3]": [0.9, 0.8, nan], "[0,6]": [0.9, nan, 0.7]},
        ["0", "3", "6"],
        tmp_path / "gaps.png",
        "gaps",
        bands={"[0,6]": ([0.85, nan, 0.6], [0.95, nan, 0.8])},
    )
    assert drawn["lines"]["[0,6]"] == [[0.0, 0.9], [2.0, 0.7]]  # one segment, 0 to 6
    assert drawn["lines"]["[0,3]"] == [[0.0, 0.9], [1.0, 0.8]]
    (band,) = drawn["bands"]
    assert np.isfinite(band).all() and {0.0, 2.0} <= set(band[:, 0])


def test_plot_layer_head_heatmap(tmp_path):
    matrix = np.random.default_rng(0).random((4, 6))
    matrix[1, 2] = np.nan
    path = plot_layer_head_heatmap(
        matrix,
        tmp_path / "heat.png",
        "alignment",
        ["L01", "L02", "L03", "L04"],
        vmin=0,
        vmax=1,
        annotate_top=3,
    )
    _assert_png(path)
    _assert_png(plot_layer_head_heatmap(matrix, tmp_path / "plain.png", "plain"))


def test_plot_text_vs_image(tmp_path):
    path = plot_text_vs_image([0.7, 0.6], [0.3, 0.4], ["L01", "L02"], tmp_path / "ti.png", "CLS")
    _assert_png(path)


def test_no_figures_left_open(tmp_path):
    before = plt.get_fignums()
    for i in range(5):
        plot_layer_head_heatmap(np.eye(3), tmp_path / f"h{i}.png", "t")
    assert plt.get_fignums() == before


def test_heatmap_outlines_the_best_heads_by_the_ranking_given(tmp_path, monkeypatch):
    """Drawn: test accuracy; outlined: the best heads by validation accuracy, not by test."""
    from matplotlib.axes import Axes

    outlined = []
    real = Axes.add_patch
    monkeypatch.setattr(Axes, "add_patch", lambda ax, p: outlined.append(p.get_xy()) or real(ax, p))
    test = np.array([[0.9, 0.1], [0.2, 0.3]])
    val = np.array([[0.1, 0.9], [0.2, 0.3]])
    plot_layer_head_heatmap(test, tmp_path / "a.png", "t", annotate_top=1, rank_by=val, chance=0.5)
    assert outlined == [(0.5, -0.5)]  # layer 1, head 2: best on validation
    outlined.clear()
    plot_layer_head_heatmap(test, tmp_path / "b.png", "t", annotate_top=1)
    assert outlined == [(-0.5, -0.5)]  # by default the drawn values rank
    with pytest.raises(ValueError, match="rank_by"):
        plot_layer_head_heatmap(test, tmp_path / "c.png", "t", annotate_top=1, rank_by=val[:1])
