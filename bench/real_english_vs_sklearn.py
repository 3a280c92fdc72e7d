"""vlprobe vs a validation-tuned scikit-learn probe on real English (SentEval-format BShift).

The data: ``bench/real_english.py`` (real prose found on this machine, ~10k sentences, half
with two adjacent words swapped). The model: the shipped MiniLM (``model=text``), extracted
through the real linguistic-task path (``task=linguistic/bigram_shift``, mean-pooled
sentence vector per layer). Per layer, scikit-learn ``LogisticRegression`` (lbfgs,
standardised on train, C from a grid picked on validation) against vlprobe's default linear
probes (all layers at once), on identical features; scikit-learn once with the usual C grid
(1e-3 ... 10) and once with vlprobe's L2 grid as C = 1 / (l2 * n_train) (the same
objectives: any difference is the solver). Target: mean per-layer |test acc difference|
<= 1 point.

    python bench/real_english_vs_sklearn.py            # every sentence found
    python bench/real_english_vs_sklearn.py --quick    # 600 sentences
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from _common import add_common_args, compose_cfg, finish, print_table, quiet, set_threads, timed
from real_english import build_lines
from vs_sklearn import tuned_logreg

from probes.prepare import prepare
from probes.run import build_engine
from vlprobe.cache.schema import SPLIT_IDS

TARGET_MEAN_POINTS = 1.0
C_GRID = [1e-3, 1e-2, 1e-1, 1.0, 10.0]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--pooling", default="mean", choices=["cls", "mean"])
    parser.add_argument("--override", nargs="*", default=[], help="extra train_probe overrides")
    args = parser.parse_args(argv)
    quiet()
    set_threads(args.threads)
    root = args.workdir / "real_english"
    data_file = root / "senteval" / "bigram_shift.txt"
    lines = build_lines(seed=0, limit=600 if args.quick else None)
    data_file.parent.mkdir(parents=True, exist_ok=True)
    if not data_file.exists() or data_file.read_text(encoding="utf-8") != "\n".join(lines) + "\n":
        data_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = compose_cfg(
        [
            "task=linguistic/bigram_shift",
            "model=text",
            "data=real",
            f"data.root={root}",
            "task.baseline_model=null",
            f"task.pooling=[{args.pooling}]",
            f"paths.cache_dir={root / 'cache'}",
            *args.override,
        ],
        args.workdir / "runs",
    )
    from hydra.utils import instantiate

    task = instantiate(cfg.task)
    inputs = prepare(cfg, task)
    try:
        reader = inputs.reader
        layers = list(range(reader.num_layers + 1))
        view = task.view(reader, args.pooling, layers)
        view.load_into_memory()
        with timed() as vl_t:
            vl_rows = build_engine(cfg, []).train_view(view, f"bigram_shift/{args.pooling}")
        per_layer = []
        with timed() as sk_t:
            for k, layer in enumerate(layers):
                data = {}
                for split in ("train", "val", "test"):
                    rows = view.rows(SPLIT_IDS[split])
                    data[split] = (view.read(rows)[:, k].astype(np.float32), view.labels[rows])
                val, c, test, _ = tuned_logreg(data, C_GRID, 1000)
                vl = vl_rows[k]
                # the same objective as vlprobe's grid: C = 1 / (l2 * n_train)
                n_train = data["train"][1].size
                same_grid = [1.0 / (l2 * n_train) for l2 in cfg.probing.l2_grid]
                _, same_c, same_test, _ = tuned_logreg(data, same_grid, 1000)
                per_layer.append(
                    {
                        "layer": layer,
                        "sklearn_val": 100 * val,
                        "vlprobe_val": 100 * vl["val_acc"],
                        "sklearn_acc": 100 * test,
                        "vlprobe_acc": 100 * vl["test_acc"],
                        "diff_pts": 100 * (vl["test_acc"] - test),
                        "sklearn_same_grid_acc": 100 * same_test,
                        "diff_same_grid_pts": 100 * (vl["test_acc"] - same_test),
                        "sklearn_C": c,
                        "vlprobe_C": 1 / (vl["l2"] * vl["n_train"]) if vl.get("l2") else None,
                    }
                )
    finally:
        inputs.close()
    diffs = [abs(r["diff_pts"]) for r in per_layer]
    same = [abs(r["diff_same_grid_pts"]) for r in per_layer]
    summary = {
        "sentences": len(lines),
        "n_train": vl_rows[0]["n_train"],
        "mean_abs_diff_pts": float(np.mean(diffs)),
        "max_abs_diff_pts": max(diffs),
        "same_grid_mean_abs_diff_pts": float(np.mean(same)),
        "same_grid_max_abs_diff_pts": max(same),
        "vlprobe_s": vl_t.wall,
        "sklearn_s": sk_t.wall,
        "target_mean_pts": TARGET_MEAN_POINTS,
        "met": float(np.mean(diffs)) <= TARGET_MEAN_POINTS,
    }
    print_table(f"real English BShift, MiniLM {args.pooling} pooling, per layer", per_layer)
    print_table("vs tuned scikit-learn", [summary])
    return finish(args, "real_english_vs_sklearn", {"summary": summary, "per_layer": per_layer})


if __name__ == "__main__":
    main()
