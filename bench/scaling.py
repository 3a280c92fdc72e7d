"""Wall time of one probe run at 1x, 2x, 4x and 8x the examples: it should grow linearly.

One ``ProbeEngine.train_view`` run (the real ``train_probe`` config, fixed epochs so every
size does the same number of passes) per cache size, for the 13-layer embedding view and the
144-head attention view. Reported: wall time, time per training pair per epoch, and each
size's time relative to a linear extrapolation of the 1x run, and the marginal time per
added pair (set-up, imports and Trainer start cancel out).

    python bench/scaling.py            # 5k, 10k, 20k, 40k pairs
    python bench/scaling.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
from typing import Any

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
    split_rows,
    timed,
)

from probes.run import build_engine

FACTORS = (1, 2, 4, 8)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 5)")
    parser.add_argument("--mode", default="auto", choices=["auto", "stream", "memory"])
    args = parser.parse_args(argv)
    quiet()
    set_threads(args.threads)
    epochs = args.epochs or (1 if args.quick else 5)
    base = spec_from(args).scaled(1.0 if args.quick else 0.25)
    specs = {f: base.scaled(f) for f in FACTORS}
    paths = {f: ensure_cache(args.workdir, spec) for f, spec in specs.items()}
    cfg = compose_cfg(
        [f"trainer.max_epochs={epochs}", f"loader.mode={args.mode}", "~callbacks"],
        args.workdir / "runs",
    )
    # warm-up: Lightning's first Trainer imports and initialises lazily
    warm = relation_views(paths[1], ["head"])["head"]
    build_engine(compose_cfg(["trainer.max_epochs=1"], args.workdir / "runs"), []).train_view(
        warm, "warm"
    )

    rows = []
    for kind in ("embedding", "head"):
        first: float | None = None
        previous: tuple[float, int] | None = None
        for factor in FACTORS:
            view = relation_views(paths[factor], [kind])[kind]
            pairs = len(split_rows(view, "train"))
            with timed() as t:
                build_engine(cfg, []).train_view(view, f"identification/{kind}")
            first = first if first is not None else t.wall
            marginal = float("nan")
            if previous is not None:  # the cost of the added pairs: set-up cancels out
                marginal = 1e6 * (t.wall - previous[0]) / ((pairs - previous[1]) * epochs)
            previous = (t.wall, pairs)
            unit = "layers" if kind == "embedding" else "heads"
            rows.append(
                {
                    "view": f"{len(view.probe_names)} {unit}",
                    "scale": f"{factor}x",
                    "train_pairs": pairs,
                    "wall_s": t.wall,
                    "us_per_pair_epoch": 1e6 * t.wall / (pairs * epochs),
                    "marginal_us_per_pair_epoch": marginal,
                    "vs_linear": t.wall / (first * factor),
                }
            )
    print_table(f"scaling ({epochs} epochs per run, loader mode {args.mode})", rows)
    return finish(
        args, "scaling", {"rows": rows, "specs": {f: s.__dict__ for f, s in specs.items()}}
    )


if __name__ == "__main__":
    main()
