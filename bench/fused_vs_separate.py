"""All 144 per-head and all 13 per-layer probes in one vlprobe run vs one Lightning run per probe.

Fused: ``ProbeEngine.train_view`` on the whole view (one MultiProbe, one Trainer). Separate:
the same ``train_view`` on a view that holds one probe, once per probe: each run builds its own
datamodule (loads its data), input statistics and Trainer, as a per-layer / per-head script
(structural-probes, NeuroX) does, except that the separate runs share this process, so Python
and library start-up (printed, several seconds per process) is *not* charged to them.

Both sides use the real ``train_probe`` config (linear probe, Adam, same seed, same batches)
(``probing.solver=sgd``) for the same number of epochs; each probe is tested at its own best
validation epoch. Probes start from weights seeded by (seed, name), so probe k starts from the
same point fused or alone and test accuracies can be compared probe by probe.
``--early-stopping`` keeps the config's plateau stopping (per probe: a stopped probe takes no
further updates, so accuracies stay identical). Every run
is timed ``--repeats`` times (default 2) and its best time kept, on both sides.

    python bench/fused_vs_separate.py            # 20k pairs, 13 x 768-d layers, 144 heads
    python bench/fused_vs_separate.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    add_common_args,
    compose_cfg,
    ensure_cache,
    finish,
    print_table,
    quiet,
    relation_views,
    set_threads,
    spec_from,
    timed,
)

from datamodules.views import PairAttentionView
from probes.run import build_engine

TARGETS = {"head": 30.0, "embedding": 3.0}
MAX_ACC_DIFF_POINTS = 0.5


@dataclass
class OneHeadView(PairAttentionView):
    """One head's ``[s->o, o->s]`` attention: what a per-head script would feed its probe."""

    head: int = 0

    def _read_segment(self, rows: np.ndarray) -> np.ndarray:
        block = super()._read_segment(rows)  # (B, A * H, 2)
        return np.ascontiguousarray(block[:, self.head : self.head + 1])


def single_probe_view(path: Path, kind: str, k: int) -> Any:
    """A fresh view (own reader, own arrays) holding only probe ``k`` of ``kind``."""
    if kind == "embedding":
        return relation_views(path, ["embedding"], layers=[k])["embedding"]
    full = relation_views(path, ["head"])["head"]
    values = {f.name: getattr(full, f.name) for f in fields(full) if f.init}
    values["probe_names"] = [full.probe_names[k]]
    values["probe_ids"] = [full.probe_ids[k]]
    return OneHeadView(**values, head=k)


def startup_seconds() -> float:
    """Wall time of a fresh interpreter importing the engine: what each separate process pays."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import probes.engine"], check=True)
    return time.perf_counter() - started


def best_of(repeats: int, fn: Any) -> tuple[Any, float, float]:
    """``fn()``'s result and its best wall and CPU seconds over ``repeats`` runs (noise only
    ever adds time on a shared machine; the runs are deterministic)."""
    result, wall, cpu = None, float("inf"), float("inf")
    for _ in range(repeats):
        with timed() as t:
            result = fn()
        wall, cpu = min(wall, t.wall), min(cpu, t.cpu)
    return result, wall, cpu


def compare(
    path: Path, kind: str, cfg: Any, sample: int, seed: int, repeats: int
) -> dict[str, Any]:
    """Fused run, then ``sample`` separate runs (all when 0); accuracies of the probes run."""
    prefix = f"identification/{kind}"
    fused_rows, fused_wall, fused_cpu = best_of(
        repeats,
        lambda: build_engine(cfg, []).train_view(relation_views(path, [kind])[kind], prefix),
    )
    num = len(fused_rows)
    chosen = list(range(num))
    if 0 < sample < num:
        rng = np.random.default_rng(seed)
        best = int(np.argmax([r["val_acc"] for r in fused_rows]))
        chosen = sorted({best, *rng.choice(num, size=sample - 1, replace=False).tolist()})
    sep_wall, sep_cpu, diffs = [], [], []
    for k in chosen:
        (row,), wall, cpu = best_of(
            repeats,
            lambda k=k: build_engine(cfg, []).train_view(single_probe_view(path, kind, k), prefix),
        )
        sep_wall.append(wall)
        sep_cpu.append(cpu)
        assert row["name"] == fused_rows[k]["name"], (row["name"], fused_rows[k]["name"])
        diffs.append(100 * abs(row["test_acc"] - fused_rows[k]["test_acc"]))
    est_wall = float(np.mean(sep_wall)) * num
    est_cpu = float(np.mean(sep_cpu)) * num
    ratio = est_wall / fused_wall
    accs = [100 * r["test_acc"] for r in fused_rows]
    return {
        "probes": f"{num} {'heads' if kind == 'head' else 'layers'}",
        "fused_s": fused_wall,
        "separate_runs": len(chosen),
        "separate_s_each": float(np.mean(sep_wall)),
        "separate_s_all_est": est_wall,
        "ratio_wall": ratio,
        "ratio_cpu": est_cpu / fused_cpu,
        "target": TARGETS[kind],
        "max_dacc_pts": max(diffs),
        "mean_dacc_pts": float(np.mean(diffs)),
        "acc_range": f"{min(accs):.1f}-{max(accs):.1f}",
        "met": ratio >= TARGETS[kind] and max(diffs) <= MAX_ACC_DIFF_POINTS,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--epochs", type=int, default=None, help="max epochs (default 8)")
    parser.add_argument(
        "--head-sample", type=int, default=None, help="separate head runs to time (default 24)"
    )
    parser.add_argument(
        "--layer-sample", type=int, default=0, help="separate layer runs to time (0 = all 13)"
    )
    parser.add_argument("--mode", default="auto", choices=["auto", "stream", "memory"])
    parser.add_argument(
        "--early-stopping",
        action="store_true",
        help="keep the config's plateau stopping (a lone probe then stops on its own plateau, "
        "the fused run on the last probe's, so accuracies may differ by a later best epoch)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=None, help="best of N timings per run (default 2)"
    )
    args = parser.parse_args(argv)
    quiet()
    set_threads(args.threads)
    epochs = args.epochs or (1 if args.quick else 8)
    head_sample = args.head_sample if args.head_sample is not None else (2 if args.quick else 24)
    layer_sample = 2 if args.quick and not args.layer_sample else args.layer_sample
    spec = spec_from(args)
    path = ensure_cache(args.workdir, spec)
    cfg = compose_cfg(
        [
            f"trainer.max_epochs={epochs}",
            f"loader.mode={args.mode}",
            f"seed={args.seed}",
            "probing.solver=sgd",
            *([] if args.early_stopping else ["~callbacks"]),
        ],
        args.workdir / "runs",
    )
    repeats = args.repeats or (1 if args.quick else 2)
    rows = [
        compare(path, "head", cfg, head_sample, args.seed, repeats),
        compare(path, "embedding", cfg, layer_sample, args.seed, repeats),
    ]
    print_table(
        f"fused vs separate: {spec.num_pairs} pairs, {epochs} epochs max, "
        f"loader mode {args.mode}, {args.threads} thread(s), best of {repeats}, "
        f"{'plateau stopping' if args.early_stopping else 'no early stopping'}",
        rows,
    )
    extra: dict[str, Any] = {}
    if not args.quick:
        extra["python_startup_s"] = startup_seconds()
        print(
            f"a fresh process importing the engine takes {extra['python_startup_s']:.1f} s "
            "(not charged to the separate runs)"
        )
    return finish(args, "fused_vs_separate", {"rows": rows, "spec": spec.__dict__, **extra})


if __name__ == "__main__":
    main()
