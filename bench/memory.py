"""Peak memory of a probe run in streaming mode on a cache 4x larger than another.

Each run is a fresh interpreter (``ru_maxrss`` is a process's lifetime peak) that trains the
relation-identification probes on all layers and all heads with ``ProbeEngine.train_view``.
Streaming must not grow with the cache: only batches, the h5py chunk cache and per-row index
arrays live in memory. ``auto`` mode must load a view only when it fits
``loader.memory_budget_mb``: run with a budget between the two caches' view sizes.

    python bench/memory.py            # 10k vs 40k pairs, 13 x 768-d
    python bench/memory.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import (
    add_common_args,
    ensure_cache,
    finish,
    peak_rss_mib,
    print_table,
    set_threads,
    spec_from,
)

TARGET = 1.2
KINDS = ("embedding", "head")


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Run the probes in this (fresh) process; print one JSON line with the peak RSS."""
    from _common import compose_cfg, quiet, relation_views, timed

    from probes.run import build_engine

    quiet()
    set_threads(args.threads)
    before = peak_rss_mib()
    views = relation_views(args.cache, KINDS)
    result: dict[str, Any] = {"import_rss_mib": before, "modes": {}, "view_mib": {}}
    if args.epochs:
        cfg = compose_cfg(
            [
                f"trainer.max_epochs={args.epochs}",
                f"loader.mode={args.mode}",
                f"loader.memory_budget_mb={args.budget_mb}",
                "probing.solver=sgd",  # the streaming / in-memory datamodule is measured
            ],
            args.workdir / "runs",
        )
        with timed() as t:
            for kind, view in views.items():
                result["view_mib"][kind] = view.nbytes() / 2**20
                build_engine(cfg, []).train_view(view, f"identification/{kind}")
                result["modes"][kind] = (
                    "memory" if view.sources()[0]._memory is not None else "stream"
                )
        result["wall_s"] = t.wall
    result["peak_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(result), flush=True)
    return result


def run_child(cache: Path, mode: str, budget_mb: float, epochs: int, args: Any) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--cache",
        str(cache),
        "--mode",
        mode,
        "--budget-mb",
        str(budget_mb),
        "--epochs",
        str(epochs),
        "--threads",
        str(args.threads),
        "--workdir",
        str(args.workdir),
    ]
    if args.quick:  # smoke test: same code in this process (start-up costs ~8 s per child)
        return child(parser_for().parse_args(cmd[2:]))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def parser_for() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 2)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="stream", help=argparse.SUPPRESS)
    parser.add_argument("--budget-mb", type=float, default=2048, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser_for().parse_args(argv)
    if args.child:
        child(args)
        return {}
    set_threads(args.threads)
    epochs = args.epochs or (1 if args.quick else 2)
    small = spec_from(args).scaled(0.5 if not args.quick else 1.0)
    large = small.scaled(4.0)
    caches = {"1x": ensure_cache(args.workdir, small), "4x": ensure_cache(args.workdir, large)}
    floor = run_child(caches["1x"], "stream", 0, 0, args)
    runs = {name: run_child(path, "stream", 0, epochs, args) for name, path in caches.items()}
    # auto: a budget between the two embedding views' sizes (geometric mean)
    sizes = {name: r["view_mib"]["embedding"] for name, r in runs.items()}
    budget = (sizes["1x"] * sizes["4x"]) ** 0.5
    auto = {name: run_child(path, "auto", budget, epochs, args) for name, path in caches.items()}

    rows = [
        {
            "run": "imports + open cache, no training",
            "pairs": small.num_pairs,
            "mode": "-",
            "view_MiB": float("nan"),
            "peak_rss_MiB": floor["peak_rss_mib"],
            "vs_1x": float("nan"),
        }
    ]
    for label, group in (("stream", runs), (f"auto, budget {budget:.3g} MiB", auto)):
        for name, spec in (("1x", small), ("4x", large)):
            r = group[name]
            rows.append(
                {
                    "run": f"{label}, {name}",
                    "pairs": spec.num_pairs,
                    "mode": "/".join(r["modes"][k] for k in KINDS),
                    "view_MiB": r["view_mib"]["embedding"] + r["view_mib"]["head"],
                    "peak_rss_MiB": r["peak_rss_mib"],
                    "vs_1x": r["peak_rss_mib"] / group["1x"]["peak_rss_mib"],
                }
            )
    ratio = runs["4x"]["peak_rss_mib"] / runs["1x"]["peak_rss_mib"]
    auto_ok = auto["1x"]["modes"]["embedding"] == "memory" and (
        auto["4x"]["modes"]["embedding"] == "stream"
    )
    print_table(f"peak RSS, fresh process per run ({epochs} epoch(s), embedding/head views)", rows)
    summary = {
        "stream_4x_over_1x": ratio,
        "target": TARGET,
        "met": ratio <= TARGET,
        "auto_picks_memory_only_when_it_fits": auto_ok,
    }
    print_table("summary", [summary])
    return finish(args, "memory", {"rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
