"""A task row depends on its probe's data and settings only (issue 25): for every probing
task, the task rows are identical with and without controls, seeds, MDL and other probes in
the run (full-batch L-BFGS, converged solves, each label set its own problem)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import open_dict
from tasks.test_linguistic import senteval_caches  # noqa: F401  (fixture)
from tasks.test_visual_coreference import coref_cache  # noqa: F401  (fixture)

from probes.run import run
from vlprobe.reporting.run_results import read_run_results

#: what a task row says of its own probe (controls, seeds and MDL add columns beside these)
TASK_FIELDS = (
    "val_acc",
    "test_acc",
    "val_f1",
    "test_f1",
    "l2",
    "lbfgs_iters",
    "lbfgs_stop",
    "converged",
    "chance",
)
#: everything else a run can solve beside the task's probes, in one run
EXTRAS = [
    "probing.control=true",
    "probing.shuffled_control=true",
    "seeds=[3,4]",
    "probing.mdl=true",
]


def _rows(compose_cfg, overrides: list[str], caches: dict | None = None) -> dict[str, dict]:
    cfg = compose_cfg(["logger=none", "trainer=cpu", "probing.solver=lbfgs", *overrides])
    if caches is not None:
        with open_dict(cfg):
            cfg.task.caches = caches
    run(cfg)
    rows = read_run_results(Path(cfg.paths.output_dir) / "results.json").rows
    return {f"{r.get('probing_task', '')}/{r['name']}": r for r in rows}


def _same(rows: dict[str, dict], reference: dict[str, dict]) -> None:
    assert rows.keys() <= reference.keys() and rows
    for name, row in rows.items():
        for key in TASK_FIELDS:
            assert row.get(key) == reference[name].get(key), (name, key)


def _check(compose_cfg, base: list[str], subset: str, caches: dict | None = None) -> None:
    plain = _rows(compose_cfg, base, caches)
    assert all(r["converged"] for r in plain.values())
    _same(_rows(compose_cfg, [*base, *EXTRAS], caches), plain)
    _same(_rows(compose_cfg, [*base, subset], caches), plain)


def test_relation_rows_do_not_depend_on_what_shares_the_run(compose_cfg, planted_cache) -> None:
    _check(compose_cfg, [f"data.cache={planted_cache}"], "probing.layers=[2]")


def test_coreference_rows_do_not_depend_on_what_shares_the_run(
    compose_cfg,
    coref_cache,  # noqa: F811
) -> None:
    base = ["task=visual_coreference", f"data.cache={coref_cache}"]
    _check(compose_cfg, base, "probing.layers=[1]")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_linguistic_rows_do_not_depend_on_what_shares_the_run(
    compose_cfg,
    senteval_caches,  # noqa: F811
) -> None:
    base = ["task=linguistic/all", "task.tasks=[bigram_shift]"]
    _check(compose_cfg, base, "probing.layers=[1]", senteval_caches)
