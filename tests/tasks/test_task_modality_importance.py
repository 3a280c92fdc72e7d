"""Modality importance on the tiny cache: [CLS] mass per head, raw and per token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from probes.run import run
from vlprobe.reporting.run_results import read_run_results

Compose = Callable[..., DictConfig]

# test split = e1 (4 text, 4 image tokens) and e2 (4 text, 6 image); see conftest.CLS_MASS
TEXT = [[0.75, 0.375], [0.375, 0.5]]
IMAGE = [[0.25, 0.625], [0.625, 0.5]]
# per token: mean over examples of mass / count, e.g. head (1, 1): text (0.75/4 + 0.75/4) / 2
# = 18/96, image (0.25/4 + 0.25/6) / 2 = 5/96 -> 18/23
SHARE_NORMALISED = [[18 / 23, 9 / 22], [9 / 21, 12 / 21.5]]
PER_TOKEN_TEXT = [[18 / 96, 9 / 96], [9 / 96, 12 / 96]]
# content tokens only: text mass minus the [CLS]/[SEP] mass (conftest.CLS_SPECIAL), over the
# 2 content words of each example
CONTENT_TEXT = [[0.375, 0.1875], [0.1875, 0.125]]  # (e1 + e2) / 2, e.g. (0.25 + 0.5) / 2
CONTENT_SHARE = np.array(CONTENT_TEXT) / (np.array(CONTENT_TEXT) + np.array(IMAGE))
IMAGE_PER_TOKEN = [[5 / 96, 13 / 96], [12 / 96, 9.5 / 96]]  # (m1 / 4 + m2 / 6) / 2
CONTENT_PER_TOKEN = np.array(CONTENT_TEXT) / 2
CONTENT_SHARE_NORMALISED = CONTENT_PER_TOKEN / (CONTENT_PER_TOKEN + np.array(IMAGE_PER_TOKEN))


def _overrides(path: Path, *extra: str) -> list[str]:
    return ["task=modality_importance", f"data.cache={path}", "logger=csv", *extra]


def _matrix(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r[key] for r in rows]).reshape(2, 2)


def test_shares_per_head(compose_cfg: Compose, tiny_cache: Path, execute_task) -> None:
    out, logger = execute_task(compose_cfg(_overrides(tiny_cache)), tiny_cache)
    assert [r["name"] for r in out.rows] == ["L01H01", "L01H02", "L02H01", "L02H02"]
    assert [r["layer_name"] for r in out.rows] == ["L01", "L01", "L02", "L02"]
    np.testing.assert_allclose(_matrix(out.rows, "text"), TEXT)
    np.testing.assert_allclose(_matrix(out.rows, "image"), IMAGE)
    np.testing.assert_allclose(_matrix(out.rows, "text_share"), TEXT)  # text + image = 1
    np.testing.assert_allclose(_matrix(out.rows, "text_per_token"), PER_TOKEN_TEXT)
    np.testing.assert_allclose(_matrix(out.rows, "text_share_normalised"), SHARE_NORMALISED)
    np.testing.assert_allclose(_matrix(out.rows, "image_per_token"), IMAGE_PER_TOKEN)
    np.testing.assert_allclose(_matrix(out.rows, "content_text"), CONTENT_TEXT)
    np.testing.assert_allclose(_matrix(out.rows, "content_text_share"), CONTENT_SHARE)
    np.testing.assert_allclose(
        _matrix(out.rows, "content_text_share_normalised"), CONTENT_SHARE_NORMALISED
    )
    assert CONTENT_SHARE[0, 0] == pytest.approx(0.6)
    assert {r["n_examples"] for r in out.rows} == {2}
    # console: one row per layer, the mean over its heads
    assert [r["text"] for r in out.console_rows] == pytest.approx([0.5625, 0.4375])
    # per-head values reach W&B as the rows' tables, not one history key per head
    assert not any("/L01H01" in key for key in logger.metrics)
    assert out.summary["modality/text_share/mean"] == pytest.approx(0.5)
    assert out.summary["modality/heads_text_dominant"] == pytest.approx(0.25)
    assert out.summary["modality/max_text_share_layer"] == "L01"


def test_all_splits(compose_cfg: Compose, tiny_cache: Path, execute_task) -> None:
    out, _ = execute_task(compose_cfg(_overrides(tiny_cache, "task.split=all")), tiny_cache)
    # e0 adds 0.5 everywhere: the mean over three examples
    expected = (np.array(TEXT) * 2 + 0.5) / 3
    np.testing.assert_allclose(_matrix(out.rows, "text"), expected)


def test_through_run(compose_cfg: Compose, tiny_cache: Path) -> None:
    cfg = compose_cfg(_overrides(tiny_cache))
    run(cfg)
    out_dir = Path(cfg.paths.output_dir)
    rows = read_run_results(out_dir / "results.json").rows
    np.testing.assert_allclose(_matrix(rows, "text_share_normalised"), SHARE_NORMALISED)
    assert (out_dir / "results.csv").exists()
    for name in (
        "text_share_heads",
        "text_share_normalised_heads",
        "content_text_share_heads",
        "text_share_by_layer",
        "text_vs_image_by_layer",
    ):
        assert (out_dir / f"modality_{name}.png").stat().st_size > 0


def test_two_stream_refused(
    compose_cfg: Compose, make_tiny_cache: Callable[..., Path], execute_task
) -> None:
    path = make_tiny_cache(model_kind="two-stream")
    with pytest.raises(ValueError, match="two-stream model .*by construction"):
        execute_task(compose_cfg(_overrides(path)), path)
