"""Cross-modal alignment on the tiny cache: per-head accuracy, chance and cross-modal share."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from probes.run import run
from vlprobe.analysis.stats import wilson_interval
from vlprobe.reporting.run_results import read_run_results

Compose = Callable[..., DictConfig]

# test split: 3 scored phrases (e1 p0, e1 p1, e2 p0; e1 p2 has no gold region), see conftest
# default, candidates=all: the grounding credit over all input regions (conftest GROUNDING)
ACC_TEST = [[2 / 3, 1 / 3], [0.5 / 3, 1 / 3]]
CHANCE = (1 / 4 + 2 / 4 + 1 / 8) / 3  # #gold / #input regions per scored phrase
ACC_ALL = [[3 / 4, 1 / 4], [0.5 / 4, 2 / 4]]  # + e0's phrase
CHANCE_ALL = (3 * CHANCE + 1 / 4) / 4
# candidates=mentioned: argmax over the regions the caption mentions (conftest *_PHRASES)
ACC_TEST_MENTIONED = [[1.0, 0.0], [2 / 3, 1 / 3]]
ACC_ALL_MENTIONED = [[1.0, 1 / 4], [3 / 4, 2 / 4]]  # + e0's phrase, right for every head
CHANCE_MENTIONED = (1 / 3 + 2 / 3 + 1 / 2) / 3  # #gold / #mentioned regions per scored phrase
CROSS_SHARE = [[0.0, 1.0], [0.5, 0.25]]  # from the maps of e0 and e1


def _overrides(path: Path, *extra: str) -> list[str]:
    return ["task=cross_modal_alignment", f"data.cache={path}", "logger=csv", *extra]


def _matrix(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r[key] for r in rows], dtype=float).reshape(2, 2)


def test_accuracy_per_head(compose_cfg: Compose, tiny_cache: Path, execute_task) -> None:
    cfg = compose_cfg(
        _overrides(
            tiny_cache, "task.top_k=2", "task.candidates=mentioned", "task.select_split=train"
        )
    )
    out, logger = execute_task(cfg, tiny_cache)
    assert [r["name"] for r in out.rows] == ["L01H01", "L01H02", "L02H01", "L02H02"]
    assert [(r["kind"], r["layer"], r["head"], r["family"]) for r in out.rows] == [
        ("head", a, h, "none") for a in (1, 2) for h in (1, 2)
    ]  # identity as fields: 1-based layer and head, a training-free measure
    np.testing.assert_allclose(_matrix(out.rows, "alignment_acc"), ACC_TEST_MENTIONED)
    np.testing.assert_allclose(_matrix(out.rows, "cross_modal_share"), CROSS_SHARE)
    assert [r["chance"] for r in out.rows] == pytest.approx([CHANCE_MENTIONED] * 4)
    assert {r["candidates"] for r in out.rows} == {"mentioned"}
    assert {r["n_phrases"] for r in out.rows} == {3}
    # top 2 on train (e0: every head right, ties in layer-major order), scored on test
    assert [r["name"] for r in out.console_rows] == ["L01H01", "L01H02"]
    assert out.summary["alignment/top_heads"] == ["L01H01=1.000", "L01H02=0.000"]
    assert out.summary["alignment/best_head"] == "L01H01"
    assert [r["alignment_acc_select"] for r in out.rows] == [1.0] * 4
    assert out.summary["alignment/frac_heads_above_0.5"] == pytest.approx(0.5)
    assert out.summary["alignment/cross_share/n_maps"] == 2
    assert logger.metrics["alignment/chance"] == pytest.approx(CHANCE_MENTIONED)
    assert not any("/L02H02" in key for key in logger.metrics)  # per head: the rows' tables
    assert set(out.figures) == {"accuracy_heads", "accuracy_by_layer", "cross_share_heads"}


def test_all_regions_is_the_default(compose_cfg: Compose, tiny_cache: Path, execute_task) -> None:
    out, _ = execute_task(compose_cfg(_overrides(tiny_cache)), tiny_cache)
    np.testing.assert_allclose(_matrix(out.rows, "alignment_acc"), ACC_TEST)
    assert [r["chance"] for r in out.rows] == pytest.approx([CHANCE] * 4)
    assert {r["candidates"] for r in out.rows} == {"all"}
    assert {r["n_phrases"] for r in out.rows} == {3}
    low, high = wilson_interval(np.array(ACC_TEST), 3)  # over the 3 scored phrases
    np.testing.assert_allclose(_matrix(out.rows, "alignment_acc_low"), low)
    np.testing.assert_allclose(_matrix(out.rows, "alignment_acc_high"), high)
    assert out.summary["alignment/candidates"] == "all"
    # the tiny cache has no validation phrase: no best head is chosen, and that is said
    assert out.summary["alignment/best_head"] is None and out.console_rows == out.rows[:5]
    assert out.summary["alignment/select_note"].startswith("no val phrase with a gold region")
    assert out.summary["alignment/test_best_head"] == "L01H01"  # labelled, beside it
    assert out.summary["alignment/test_best_acc"] == pytest.approx(2 / 3)


def test_best_heads_are_chosen_on_validation_and_scored_on_test(
    compose_cfg: Compose, tiny_cache: Path, execute_task, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probes.tasks.cross_modal_alignment import CrossModalAlignmentTask, chosen_by_layer

    planted = {  # split -> (A, H) accuracy: L01H01 is best on test, L01H02 on val
        "test": np.array([[0.9, 0.2], [0.3, 0.4]]),
        "val": np.array([[0.1, 0.8], [0.2, 0.7]]),
    }
    original = CrossModalAlignmentTask.accuracy

    def accuracy(self, reader, split=None):  # noqa: ANN001, ANN202
        result = original(self, reader, split)
        return {**result, "acc": planted[split or self.split]}

    monkeypatch.setattr(CrossModalAlignmentTask, "accuracy", accuracy)
    out, _ = execute_task(compose_cfg(_overrides(tiny_cache, "task.top_k=2")), tiny_cache)
    summary = out.summary
    assert summary["alignment/best_head"] == "L01H02" and summary["alignment/selected_on"] == "val"
    assert summary["alignment/best_acc"] == pytest.approx(0.2)  # its test accuracy
    assert summary["alignment/best_head_select_acc"] == pytest.approx(0.8)
    assert summary["alignment/top_heads"] == ["L01H02=0.200", "L02H02=0.400"]
    assert summary["alignment/test_best_head"] == "L01H01"
    assert summary["alignment/test_best_acc"] == pytest.approx(0.9)
    assert "alignment/select_note" not in summary
    assert [r["name"] for r in out.console_rows] == ["L01H02", "L02H02"]
    np.testing.assert_allclose(chosen_by_layer(planted["test"], planted["val"]), [0.2, 0.4])


def test_all_splits(compose_cfg: Compose, tiny_cache: Path, execute_task) -> None:
    out, _ = execute_task(compose_cfg(_overrides(tiny_cache, "task.split=all")), tiny_cache)
    np.testing.assert_allclose(_matrix(out.rows, "alignment_acc"), ACC_ALL)
    assert out.rows[0]["chance"] == pytest.approx(CHANCE_ALL)
    cfg = compose_cfg(_overrides(tiny_cache, "task.split=all", "task.candidates=mentioned"))
    out, _ = execute_task(cfg, tiny_cache)
    np.testing.assert_allclose(_matrix(out.rows, "alignment_acc"), ACC_ALL_MENTIONED)
    assert out.rows[0]["chance"] == pytest.approx((3 * CHANCE_MENTIONED + 1 / 2) / 4)


def test_unknown_candidates_refused(compose_cfg: Compose, tiny_cache: Path, execute_task) -> None:
    with pytest.raises(InstantiationException, match="task.candidates"):
        execute_task(compose_cfg(_overrides(tiny_cache, "task.candidates=some")), tiny_cache)


def test_without_maps_share_is_nan(
    compose_cfg: Compose, make_tiny_cache: Callable[..., Path], execute_task
) -> None:
    path = make_tiny_cache(with_maps=False)
    out, logger = execute_task(compose_cfg(_overrides(path)), path)
    assert all(math.isnan(r["cross_modal_share"]) for r in out.rows)
    assert "max_attention_maps" in out.summary["alignment/cross_share/note"]
    assert not any(k.startswith("alignment/cross_share/") for k in logger.metrics)
    np.testing.assert_allclose(_matrix(out.rows, "alignment_acc"), ACC_TEST)
    assert "cross_share_heads" not in out.figures


def test_through_run(compose_cfg: Compose, tiny_cache: Path) -> None:
    cfg = compose_cfg(_overrides(tiny_cache))
    run(cfg)
    out_dir = Path(cfg.paths.output_dir)
    rows = read_run_results(out_dir / "results.json").rows
    np.testing.assert_allclose(_matrix(rows, "alignment_acc"), ACC_TEST)
    assert (out_dir / "results.csv").exists()
    for name in ("accuracy_heads", "accuracy_by_layer", "cross_share_heads"):
        assert (out_dir / f"alignment_{name}.png").stat().st_size > 0
