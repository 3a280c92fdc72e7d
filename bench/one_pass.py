"""One pass: ``seeds=[1,2,3] probing.control=true`` costs about one seed without control.

Both runs: ``ProbeEngine.train_view`` on the 13-layer relation-identification view with the
real ``train_probe`` config (linear probes, full-batch L-BFGS over the default L2 grid).
The second run solves (task + control) x the grid per layer in one pass over the data: the
solver starts from zero, so the seed changes neither labels nor start and the three seeds
share those slots; target: <= 1.5x the time of the single-seed run without control. Its
per-seed results must equal separate runs of each seed (checked: test accuracy per seed,
control accuracy).

    python bench/one_pass.py            # 20k pairs, 13 layers x 1536-d
    python bench/one_pass.py --quick    # smoke test
    python bench/one_pass.py --solver sgd   # the Adam path: one loop, a batch per seed (its
                                            # order), label sets and L2 grid as slots
"""

from __future__ import annotations

import argparse
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

from probes.run import build_engine

TIME_TARGET = 1.5
SEEDS = [1, 2, 3]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--override", nargs="*", default=[], help="extra train_probe overrides")
    parser.add_argument("--solver", choices=["auto", "lbfgs", "sgd"], help="probing.solver")
    args = parser.parse_args(argv)
    if args.solver:
        args.override = [f"probing.solver={args.solver}", *args.override]
    quiet()
    set_threads(args.threads)
    spec = spec_from(args)
    path = ensure_cache(args.workdir, spec)
    runs = args.workdir / "runs"
    view = relation_views(path, ["embedding"])["embedding"]
    view.load_into_memory()  # both runs start from data in memory: the solver is timed
    prefix = "identification/embedding"

    def rows(*overrides: str) -> list[dict[str, Any]]:
        return build_engine(compose_cfg([*overrides, *args.override], runs), []).train_view(
            view, prefix
        )

    with timed() as single_t:
        rows("seed=1")
    seeds = f"seeds=[{','.join(map(str, SEEDS))}]"
    with timed() as fused_t:
        fused = rows(seeds, "probing.control=true")
    separate = [rows(f"seed={s}", "probing.control=true") for s in SEEDS]
    per_seed_equal = all(
        row["test_acc_per_seed"] == [sep[k]["test_acc"] for sep in separate]
        for k, row in enumerate(fused)
    )
    control_diff = max(
        abs(row["control_test_acc"] - np.mean([sep[k]["control_test_acc"] for sep in separate]))
        for k, row in enumerate(fused)
    )
    ratio = fused_t.wall / single_t.wall
    summary = {
        "single_seed_s": single_t.wall,
        "seeds3_control_s": fused_t.wall,
        "ratio": ratio,
        "target": TIME_TARGET,
        "per_seed_equal_to_separate": per_seed_equal,
        "max_control_diff": control_diff,
        "met": ratio <= TIME_TARGET and per_seed_equal and control_diff < 1e-12,
    }
    print_table(
        f"one pass: {seeds} probing.control=true vs one seed ({spec.num_pairs} pairs)", [summary]
    )
    return finish(args, "one_pass", {"summary": summary, "spec": spec.__dict__})


if __name__ == "__main__":
    main()
