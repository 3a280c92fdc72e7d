"""The benchmarks in bench/ at toy sizes (so they cannot rot), and the engine speed-ups they
measure (so the faster paths stay equal to the plain ones).

The full benchmarks never run here: each script's ``main`` runs with ``--quick``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.cache_datamodule import CacheProbeDataModule
from probes import MultiProbe
from probes.families import LinearProbe, MLPProbe, _ProbeMatmul
from probes.tasks.visual_relation import VisualRelationTask
from vlprobe.cache.reader import CacheReader

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = (
    "fused_vs_separate",
    "vs_sklearn",
    "loader_throughput",
    "memory",
    "extraction_overhead",
    "scaling",
    "mdl_vs_sklearn",
    "one_pass",
    "lxmert_stream_sizes",
    "region_contents",
)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workdir for all scripts: the quick cache is written once and shared."""
    return tmp_path_factory.mktemp("bench")


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_run(script: str, bench_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    module = importlib.import_module(script)
    out = bench_dir / f"{script}.json"
    result = module.main(["--quick", "--workdir", str(bench_dir), "--json", str(out)])
    assert result["benchmark"] == script and out.stat().st_size > 0
    assert result["machine"]["nproc"] >= 1
    if script == "fused_vs_separate":  # same init, same batches: identical accuracies
        assert all(row["max_dacc_pts"] == 0 for row in result["rows"])
    if script == "mdl_vs_sklearn":  # the small version of the MDL comparison: within 10%
        assert result["summary"]["met"], result["per_layer"]
    if script == "one_pass":  # seeds and control riding along == separate runs
        assert result["summary"]["per_seed_equal_to_separate"]
        assert result["summary"]["max_control_diff"] < 1e-12
    if script == "lxmert_stream_sizes":  # the other streams add data, never remove any
        assert all(row["data ratio"] > 1 for row in result["rows"])
    if script == "region_contents":  # the demo's features encode category and box linearly
        first = result["per_layer"][0]
        assert first["layer"] == "emb" and first["category_acc"] > 0.9 and first["box_r2"] > 0.5
    if script == "memory":
        assert result["summary"]["auto_picks_memory_only_when_it_fits"]


# ----------------------------------------------------------------- engine speed-ups
@pytest.mark.parametrize("hidden", [0, 1])
def test_folded_standardisation_equals_standardise_then_matmul(hidden: int) -> None:
    """Forward and gradients of the folded path equal the textbook (x - m) / s path."""
    torch.manual_seed(0)
    family = MLPProbe if hidden else LinearProbe
    model = MultiProbe(3, 6, 4, family=family, **({"hidden_dim": 5} if hidden else {})).double()
    mean, std = torch.randn(3, 6).double() * 5, torch.rand(3, 6).double() + 0.1
    model.set_input_stats(mean, std)
    x = (torch.randn(16, 3, 6).double() * std + mean).half()
    y = torch.randint(0, 4, (16,))
    folded = model._loss(model(x), y)
    grads = torch.autograd.grad(folded, list(model.parameters()))

    h = (x.double() - mean) / std
    for i, (w, b) in enumerate(zip(model.probes.weights, model.probes.biases, strict=True)):
        h = torch.einsum("bpd,pdh->bph", h, w) + b
        if i < len(model.probes.weights) - 1:
            h = torch.relu(h)
    reference = model._loss(h, y)
    ref_grads = torch.autograd.grad(reference, list(model.parameters()))
    torch.testing.assert_close(folded, reference)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)


def test_probe_matmul_gradients() -> None:
    x = torch.randn(7, 3, 5, dtype=torch.double, requires_grad=True)
    w = torch.randn(3, 5, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(_ProbeMatmul.apply, (x, w))


def test_autocast_path_standardises_first() -> None:
    """Under bf16 autocast the input is standardised before the matmul (no folded mean)."""
    torch.manual_seed(0)
    model = MultiProbe(2, 4, 2)
    model.set_input_stats(torch.full((2, 4), 100.0), torch.full((2, 4), 0.01))
    x = 100.0 + 0.01 * torch.randn(8, 2, 4)
    plain = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(x)
    torch.testing.assert_close(mixed.float(), plain, atol=0.05, rtol=0.05)


def _views(path: Path, inputs: tuple[str, ...]) -> list:
    task = VisualRelationTask(subtasks=("identification",), inputs=inputs)
    return [view for _, view in task.views(CacheReader(path), layers=None)]


def test_input_stats_equal_a_full_float64_pass(planted_cache: Path) -> None:
    (view,) = _views(planted_cache, ("embedding",))
    dm = CacheProbeDataModule(view, batch_size=32, mode="stream")
    mean, std = dm.input_stats(max_rows=300)
    rows = dm.datasets["train"].rows
    rows = rows[:: -(-rows.size // 300)]
    assert rows.size <= 300
    x = view.read(rows).astype(np.float64)
    np.testing.assert_allclose(mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.numpy(), x.std(0), rtol=1e-4)
    assert dm.input_stats(max_rows=300)[0] is mean  # computed once per datamodule


@pytest.mark.parametrize("kind", ["embedding", "head"])
def test_read_batch_keeps_the_order_given(planted_cache: Path, kind: str) -> None:
    """Gathered in the given order (one block) or read sorted and put back (far-apart rows)."""
    (view,) = _views(planted_cache, (kind,))
    rows = view.rows(0)
    rng = np.random.default_rng(0)
    near = rng.permutation(rows[:64])
    far = rng.permutation(np.concatenate([rows[:20], rows[-20:]]))
    for batch in (near, far):
        got = view.read_batch(batch)
        order = np.argsort(batch, kind="stable")
        expected = np.empty_like(got)
        expected[order] = view.read(batch[order])
        np.testing.assert_array_equal(got, expected)
        for i in (0, len(batch) - 1):  # and each row alone
            np.testing.assert_array_equal(got[i], view.read(batch[i : i + 1])[0])


def test_writer_casts_activations_like_numpy() -> None:
    """The fast float32 -> float16 cast rounds exactly as numpy does (incl. overflow, NaN)."""
    from vlprobe.cache.writer import cast_activations

    rng = np.random.default_rng(0)
    data = rng.normal(scale=1e3, size=(3, 50, 7)).astype(np.float32)
    data.flat[:6] = [np.nan, np.inf, -np.inf, 7e4, 1e-8, -0.0]
    fast = cast_activations(data[:, ::2], np.dtype(np.float16))  # a strided input too
    np.testing.assert_array_equal(
        fast.view(np.uint16), data[:, ::2].astype(np.float16).view(np.uint16)
    )
    ints = np.arange(5, dtype=np.int64)
    assert cast_activations(ints, np.dtype(np.int64)) is ints


def test_per_probe_metrics_reach_callbacks_not_loggers(tmp_path: Path) -> None:
    """Per-probe epoch metrics bypass self.log and reach callback_metrics (stopping reads
    them); the loggers get aggregates only (a key per probe floods a W&B workspace)."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    def collate(items: list) -> dict:
        xs, ys = zip(*items, strict=True)
        return {"x": torch.stack(xs), "y": torch.stack(ys)}

    x, y = torch.randn(64, 3, 4), torch.randint(0, 2, (64,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16, collate_fn=collate)
    model = MultiProbe(3, 4, 2)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
    )
    trainer.fit(model, loader, loader)
    assert {"val/acc/p00", "val/f1/p02", "val/acc_best"} <= set(trainer.callback_metrics)
    trainer.test(model, loader, verbose=False)
    assert {"test/acc/p01", "test/acc_best_probe"} <= set(trainer.callback_metrics)
    trainer.logger.save()
    header = next((tmp_path / "lightning_logs").rglob("metrics.csv")).read_text().splitlines()[0]
    assert {"val/acc_best", "epoch"} <= set(header.split(","))
    assert not [k for k in header.split(",") if k.startswith(("val/acc/p", "test/f1/p"))]
