"""``task=concept_erasure`` end to end on a tiny model: plain, LEACE and random caches, compared."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import open_dict

from probes.run import run
from vlprobe.reporting.run_results import read_run_results
from vlprobe.testing.models import tiny_config


def _cfg(
    compose_cfg,
    root: Path,
    feature_dim: int,
    extra: list[str],
    model: str = "visualbert",
    config: dict | None = None,
):
    """The study on a tiny ``model`` (``config``: its architecture, default the tiny
    VisualBERT) on the demo data at ``root``, caches beside it."""
    cfg = compose_cfg(
        [
            "task=concept_erasure",
            "task.layer=1",
            "task.draws=2",
            "task.top_k=4",
            f"model={model}",
            f"data.root={root}",
            "data.make_demo=false",
            f"data.feature_dim={feature_dim}",
            "extraction.progress=false",
            "logger=none",
            "trainer=cpu",
            "probing.l2_grid=[0.001,1.0]",
            *extra,
        ]
    )
    with open_dict(cfg):
        cfg.model.pretrained = None
        cfg.model.config = config or tiny_config("visualbert", feature_dim=feature_dim)
        cfg.paths.cache_dir = str(root.parent / f"cache-study-{model}-{root.name}")
    return cfg


def test_concept_erasure_study(compose_cfg, demo_root: Path, feature_dim: int) -> None:
    cfg = _cfg(compose_cfg, demo_root, feature_dim, [])
    run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = read_run_results(out / "results.json").rows
    compared = {(r["measure"], r["layer"]): r for r in rows if "leace_minus_random" in r}
    measures = {m for m, _ in compared}
    assert measures == {
        "region_class",
        "relation_identification",
        "relation_classification",
        "alignment_best_head",
    }
    at = compared[("region_class", 1)]
    # LEACE takes the concept's linear probe at its layer far down (to the majority baseline
    # on the units it was fitted on, tests/erasure/test_pipeline.py; 108 of them in 32
    # dimensions generalise to the test units only in part), the random control does not
    assert at["plain"] > at["chance"] + 0.5
    assert at["leace"] < at["plain"] - 0.3 and at["leace"] < min(at["random_per_draw"]) - 0.3
    assert len(at["random_per_draw"]) == 2 and at["change_low"] <= at["leace_minus_random"]
    # below the erased layer nothing changed: every intervention gives the plain numbers
    below = compared[("region_class", 0)]
    assert below["leace"] == below["plain"] == below["random"]
    assert (out / "erasure_region_class.png").exists()
    assert (out / "erasure_alignment_best_head.png").exists()
    cached = sorted(p.name for p in Path(cfg.paths.cache_dir).glob("*.h5"))
    assert sum("__leace-region_class-L1__" in name for name in cached) == 2  # both data sets
    assert sum("__random-region_class-L1-d1__" in name for name in cached) == 2


@pytest.mark.parametrize("name", ["phrase_type", "senteval_label"])
def test_a_word_concept_study(
    compose_cfg, demo_root: Path, senteval_root: Path, feature_dim: int, name: str
) -> None:
    """``task.concept=phrase_type`` (measured by alignment, on the same Flickr30k captions) and
    ``senteval_label`` (its own probe only) end to end: LEACE takes the concept's probe down at
    the erased layer, the random control does not, nothing below it moves."""
    phrase = name == "phrase_type"
    measure = "task.measure=[cross_modal_alignment]" if phrase else "task.measure=[]"
    root = demo_root if phrase else senteval_root
    cfg = _cfg(compose_cfg, root, feature_dim, [f"task.concept={name}", measure])
    run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = read_run_results(out / "results.json").rows
    compared = {(r["measure"], r["layer"]): r for r in rows if "leace_minus_random" in r}
    assert {m for m, _ in compared} == ({name, "alignment_best_head"} if phrase else {name})
    at = compared[(name, 1)]
    assert at["plain"] > at["chance"] + 0.1
    assert at["leace"] < at["plain"] - 0.1 and at["leace"] < min(at["random_per_draw"]) - 0.1
    below = compared[(name, 0)]
    assert below["leace"] == below["plain"] == below["random"]
    cached = sorted(p.name for p in Path(cfg.paths.cache_dir).glob(f"*__leace-{name}-L1__*.h5"))
    assert len(cached) == 1  # the concept's data set only: its measures read the same one


def test_the_run_leaves_the_interventions_to_the_task(
    compose_cfg, demo_root: Path, feature_dim: int
) -> None:
    cfg = _cfg(compose_cfg, demo_root, feature_dim, ["intervention=leace"])
    with pytest.raises(ValueError, match="runs its own interventions: leave intervention=none"):
        run(cfg)
