"""What each layer's region states keep: the object's category and where its box is.

Relation probes read two regions' states; a model that keeps *what* a region is but drops
*where* it is loses the predicates that depend on geometry. Per model (a group of
``train_probe.py`` overrides; its visual_genome cache is built if missing) and per layer,
scikit-learn on the region embeddings of the relation cache (``units/region/embedding``):
category by ``LogisticRegression`` (C picked on validation), and the box's centre x, centre y
and log area by ``Ridge`` (alpha picked on validation; test R^2, averaged over the three).

    python bench/region_contents.py \\
        --model "model=uniter_mini" --model "model=uniter_mini model.random_init=true"
    python bench/region_contents.py --quick     # the demo default model, a smoke test
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from _common import add_common_args, compose_cfg, finish, print_table, quiet, set_threads
from vs_sklearn import tuned_logreg

from probes.prepare import prepare
from vlprobe.cache.schema import SPLIT_IDS, unit_path

C_GRID = [1e-3, 1e-2, 1e-1, 1.0]
ALPHA_GRID = [0.1, 1.0, 10.0, 100.0, 1000.0]


def box_targets(box: np.ndarray) -> np.ndarray:
    """Centre x, centre y and log area of ``(x1, y1, x2, y2)`` boxes."""
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    return np.stack([(box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2, np.log(area)], 1)


def tuned_ridge(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """Standardise on train, fit every alpha, keep the best validation R^2: its test R^2."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(data["train"][0])
    x = {s: scaler.transform(v[0]) for s, v in data.items()}
    fits = [Ridge(alpha=a).fit(x["train"], data["train"][1]) for a in ALPHA_GRID]
    best = max(fits, key=lambda m: m.score(x["val"], data["val"][1]))
    return float(best.score(x["test"], data["test"][1]))


def model_rows(spec: str, extra: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    from hydra.utils import instantiate

    cfg = compose_cfg(["task=visual_relation", *spec.split(), *extra], args.workdir / "runs")
    task = instantiate(cfg.task)
    inputs = prepare(cfg, task)
    try:
        reader = inputs.readers["model"]["visual_genome"]
        split = reader.example_split[reader.unit("region", "example")]
        category = reader.unit("region", "category")
        geometry = box_targets(reader.unit("region", "box").astype(np.float64))
        hidden = reader.file[unit_path("region", "embedding")]
        by_split = {s: split == SPLIT_IDS[s] for s in ("train", "val", "test")}
        rows = []
        for layer, name in enumerate(reader.layer_names):
            states = hidden[layer].astype(np.float32)
            _, _, cat_acc, _ = tuned_logreg(
                {s: (states[m], category[m]) for s, m in by_split.items()}, C_GRID, 2000
            )
            box_r2 = tuned_ridge({s: (states[m], geometry[m]) for s, m in by_split.items()})
            rows.append(
                {
                    "model": spec or "default",
                    "layer": name,
                    "category_acc": cat_acc,
                    "box_r2": box_r2,
                }
            )
        return rows
    finally:
        inputs.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="train_probe overrides naming one model, quoted (repeat for several)",
    )
    args = parser.parse_args(argv)
    quiet()
    set_threads(args.threads)
    models = args.model or [""]
    extra = [f"paths.data_dir={args.workdir / 'data'}", "data.scenes=60"] if args.quick else []
    rows = [row for spec in models for row in model_rows(spec, extra, args)]
    print_table("region states: category accuracy and box R^2 (test), per layer", rows)
    return finish(args, "region_contents", {"per_layer": rows})


if __name__ == "__main__":
    main()
