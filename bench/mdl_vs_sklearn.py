"""MDL online code: vlprobe's fused probes vs scikit-learn logistic regression, same blocks.

Both code the relation-identification labels of the same cache, layer by layer, over the same
shuffled training rows cut into the same blocks (``vlprobe.analysis.mdl.online_blocks``):
the first block with the uniform code, every later block with a model trained on all rows
before it. scikit-learn (the reference, Voita and Titov 2020 with a tuned linear model): per
block, standardise on all training inputs, fit ``LogisticRegression`` for every C of a grid,
keep the candidate (those fits and the add-one label prior, their C -> 0 limit) with the
lowest validation log-loss, code the block with it, probabilities through
``code_probabilities`` as vlprobe (``--variant voita``: the grid's fits only, raw
probabilities, as ``probing.mdl_variant=voita``). vlprobe: ``ProbeEngine.train_view`` with
``probing.mdl=true`` (linear probes: per block, every layer x C one batched full-batch L-BFGS
solve, the candidate chosen per probe by validation loss). Targets: vlprobe's code length
within 10% of scikit-learn's on every layer; and every layer at least 5 points above chance
compresses (> 1).

    python bench/mdl_vs_sklearn.py            # 2,500 images (16k training pairs), 13 layers
    python bench/mdl_vs_sklearn.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import math
import warnings
from itertools import pairwise
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
    split_rows,
    timed,
)

from vlprobe.analysis.mdl import (
    MDL_C_GRID,
    PRIOR_C,
    VARIANT_SMOOTHING,
    code_probabilities,
    online_blocks,
    online_codelength,
    prior_probabilities,
)

TARGET_RATIO = 1.10  # vlprobe code length / scikit-learn's, per layer


def sklearn_online_codelength(
    x: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    edges: list[int],
    val: np.ndarray,
    num_classes: int,
    grid: list[float],
    max_iter: int = 1000,
    variant: str = "smoothed",
) -> dict[str, Any]:
    """Online code length (bits) of ``y[order]`` given ``x``, C tuned per block on ``val`` rows.

    Args:
        x, y: features ``(N, d)`` and labels ``(N,)`` of a table; order: the training rows in
            coding order; edges: block ends; val: validation rows (never coded).
        variant: ``smoothed`` (the label prior a candidate, smoothed codes) or ``voita`` (the
            grid only, raw probabilities; every block must follow rows of two classes).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x[order])  # inputs only: the receiver knows them all
    xs = scaler.transform(x)
    smoothing = VARIANT_SMOOTHING[variant]
    block_bits, chosen = [], []
    for lo, hi in pairwise(edges):
        seen, coded = order[:lo], order[lo:hi]
        # the label prior, the C -> 0 limit, first: ties go to the strongest penalty
        prior = code_probabilities(prior_probabilities(y[seen], num_classes), num_classes)
        best = (float(-np.log2(prior[y[val]]).mean()), PRIOR_C, prior[y[coded]])
        if variant == "voita":
            if len(np.unique(y[seen])) < 2:
                raise ValueError(f"voita: rows [0, {lo}) hold one class; use larger blocks")
            best = (math.inf, PRIOR_C, prior[y[coded]])  # never kept: any fit beats it
        for c in grid if len(np.unique(y[seen])) > 1 else []:  # one class: the prior only
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = LogisticRegression(C=c, max_iter=max_iter).fit(xs[seen], y[seen])
            p_val = _proba(model, xs[val], num_classes, smoothing)
            loss = -np.log2(p_val[np.arange(len(val)), y[val]])
            if loss.mean() < best[0]:
                p = _proba(model, xs[coded], num_classes, smoothing)[
                    np.arange(len(coded)), y[coded]
                ]
                best = (float(loss.mean()), c, p)
        block_bits.append(float(-np.log2(best[2]).sum()))
        chosen.append(best[1])
    code = online_codelength(edges, block_bits, edges[0], num_classes)
    return {**code, "block_bits": block_bits, "chosen_C": chosen}


def _proba(model: Any, x: np.ndarray, num_classes: int, smoothing: float) -> np.ndarray:
    """``(n, num_classes)`` coded probabilities; classes the model never saw get only the
    smoothing mass."""
    out = np.zeros((len(x), num_classes))
    out[:, model.classes_] = model.predict_proba(x)
    return code_probabilities(out, num_classes, smoothing)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument(
        "--grid", type=float, nargs="+", default=list(MDL_C_GRID), help="values of C"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=list(VARIANT_SMOOTHING), default="smoothed")
    parser.add_argument("--override", nargs="*", default=[], help="extra train_probe overrides")
    args = parser.parse_args(argv)
    quiet()
    set_threads(args.threads)
    spec = spec_from(args)
    path = ensure_cache(args.workdir, spec)
    fractions = [0.02, 0.05, 0.1, 0.25, 0.5, 1.0] if args.quick else None
    overrides = [f"seed={args.seed}", "probing.mdl=true", f"probing.mdl_variant={args.variant}"]
    if fractions:
        overrides.append(f"probing.mdl_fractions=[{','.join(map(str, fractions))}]")
    cfg = compose_cfg([*overrides, *args.override], args.workdir / "runs")

    view = relation_views(path, ["embedding"])["embedding"]
    with timed() as vl_t:
        vl_rows = _vlprobe_rows(view, cfg)
    train, val = split_rows(view, "train"), split_rows(view, "val")
    order, edges = online_blocks(train, args.seed, fractions)
    per_layer = []
    with timed() as sk_t:
        for layer, vl in enumerate(vl_rows):
            x = view.read(np.arange(len(view.labels)))[:, layer].astype(np.float64)
            sk = sklearn_online_codelength(
                x, view.labels, order, edges, val, view.num_classes, args.grid, variant=args.variant
            )
            per_layer.append(
                {
                    "layer": layer,
                    "test_acc": 100 * vl["test_acc"],
                    "chance": 100 * vl["chance"],
                    "sklearn_bits": sk["online_codelength"],
                    "vlprobe_bits": vl["mdl_codelength_bits"],
                    "ratio": vl["mdl_codelength_bits"] / sk["online_codelength"],
                    "sklearn_compression": sk["compression"],
                    "vlprobe_compression": vl["mdl_compression"],
                }
            )
    ratios = [r["ratio"] for r in per_layer]
    above = [r for r in per_layer if r["test_acc"] >= r["chance"] + 5]
    summary = {
        "blocks": len(edges),
        "training_rows": int(edges[-1]),
        "max_ratio": max(ratios),
        "mean_ratio": float(np.mean(ratios)),
        "target": TARGET_RATIO,
        "vlprobe_s": vl_t.wall,
        "sklearn_s": sk_t.wall,
        "met": max(ratios) <= TARGET_RATIO and all(math.isfinite(r) for r in ratios),
        "compress_5pt_above_chance": f"{sum(r['vlprobe_compression'] > 1 for r in above)}"
        f"/{len(above)}",
    }
    print_table(f"per layer ({spec.num_pairs} pairs)", per_layer)
    print_table("MDL code length, vlprobe / scikit-learn", [summary])
    return finish(
        args, "mdl_vs_sklearn", {"summary": summary, "per_layer": per_layer, "spec": spec.__dict__}
    )


def _vlprobe_rows(view: Any, cfg: Any) -> list[dict[str, Any]]:
    from probes.run import build_engine

    return build_engine(cfg, []).train_view(view, "identification/embedding")


if __name__ == "__main__":
    main()
