"""The composition root behind ``train_probe.py``: config -> objects -> task -> results and W&B.

``run()`` is the only place that reads the config tree: it prepares the data (demo data,
extraction, opening the caches), builds the task, the probe, datamodule and trainer
constructors, callbacks and loggers with ``instantiate``, and hands those objects down.

Every run writes, in its own output folder: the resolved config (Hydra), ``results.json``,
``results.csv`` and PNG figures; logs the same to the configured loggers; prints a summary.
``wandb.finish()`` is always called so each multirun job is its own W&B run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from probes.engine import ProbeEngine
from probes.loggers import wandb_loggers
from probes.prepare import prepare
from probes.tasks.base import Task, TaskInputs, TaskOutput
from probes.tasks.streams import execute
from vlprobe.analysis.stats import MIN_SEEDS, t_quantile
from vlprobe.console import quiet_third_party, quiet_wandb_logger, set_threads
from vlprobe.extraction.pipeline import weights_seed
from vlprobe.preflight import seed_of
from vlprobe.reporting.run_results import FAILED, FINISHED, write_run_results
from vlprobe.reporting.table import format_table, write_csv
from vlprobe.reporting.wandb_publish import log_results_artifact, publish_run
from vlprobe.sweeps import run_tags

log = logging.getLogger(__name__)
WEIGHTS_DIR = "probe_weights"  # probing.save_weights: one file per probed input (probes.weights)


def build_loggers(cfg: DictConfig) -> list[Any]:
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    for lg in loggers:
        quiet_wandb_logger(lg)
    return loggers


def build_engine(cfg: DictConfig, loggers: list[Any], out_dir: Path | None = None) -> ProbeEngine:
    """The probe, datamodule, trainer and callback constructors, and the probing settings
    (chosen probe weights go to ``out_dir/probe_weights`` with ``probing.save_weights``)."""
    seeds = [int(s) for s in cfg.seeds] if cfg.get("seeds") else None
    if seeds and 1 < len(seeds) < MIN_SEEDS:
        log.warning(
            "seeds=%s: a 95%% CI over %d seeds is wide (t = %.1f) and its width a guess; rows "
            "say few_seeds; use at least %d seeds (seeds=[1,2,3]) before reading differences",
            seeds,
            len(seeds),
            t_quantile(len(seeds)),
            MIN_SEEDS,
        )
    if seeds and weights_seed(cfg) is not None:
        log.info(
            "seeds=%s re-seed the probes of one model, whose random weights are drawn from "
            "seed=%d; a multirun over seed probes one model per seed",
            seeds,
            seed_of(cfg),
        )
    return ProbeEngine(
        probe=instantiate(cfg.probe),
        datamodule=instantiate(cfg.loader),
        trainer=instantiate(cfg.trainer, _partial_=True),
        callbacks=[instantiate(c, _partial_=True) for c in (cfg.get("callbacks") or {}).values()],
        loggers=loggers,
        probing=instantiate(cfg.probing),
        seed=seed_of(cfg),
        seeds=seeds,
        weights_dir=out_dir / WEIGHTS_DIR if out_dir is not None else None,
    )


def family_name(cfg: DictConfig) -> str:
    """``linear`` / ``mlp`` / ``lowrank``: the name of the configured probe family."""
    family = cfg.probe.get("family")
    return str(instantiate(family).name) if family is not None else "linear"


def publish(
    output: TaskOutput,
    loggers: list[Any],
    out_dir: Path,
    title: str,
    inputs: TaskInputs,
    images: Path | None = None,
) -> tuple[str, list[Path]]:
    """Write results.csv, send rows/figures/summary to W&B (attention drawn over the images in
    ``images``); the console table and the files drawn. results.json is written after this,
    by :func:`run`, and the W&B results artifact that holds it last of all."""
    json_path, csv_path = out_dir / "results.json", write_csv(output.rows, out_dir / "results.csv")
    drawn = [*output.figures.values()]
    for wb in wandb_loggers(loggers):
        drawn += publish_run(wb.experiment, output, out_dir, inputs.readers, images)
    for lg in loggers:
        lg.log_hyperparams({"results_json": str(json_path)})
    shown = output.console_rows or output.rows
    table = format_table(shown, console_columns(output.columns, shown), title=title)
    text = f"{table}\n\nresults: {json_path}\n         {csv_path}\n" + "".join(
        f"figure:  {p}\n" for p in output.figures.values()
    )
    return text, drawn


#: comparisons a run adds when asked for (seeds, penalty search, controls, MDL), shown after
#: the task's own columns whenever its rows carry them
ASKED_COLUMNS = (
    "test_acc_ci95",
    "l2",
    "l2_at_edge",
    "control_test_acc",
    "selectivity",
    "shuffled_test_acc",
    "mdl_compression",
    "mdl_compression_over_prior",
)


#: shown only when some row raises them
FLAG_COLUMNS = ("l2_at_edge",)


def console_columns(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    extra = [
        c
        for c in ASKED_COLUMNS
        if c not in columns and any(r.get(c) if c in FLAG_COLUMNS else c in r for r in rows)
    ]
    return [*columns, *extra]


def run(cfg: DictConfig) -> float | None:
    """Run the configured task; returns ``optimized_metric`` for Hydra sweepers."""
    quiet_third_party()
    set_threads(cfg.get("threads"))
    pl.seed_everything(seed_of(cfg), workers=True, verbose=False)
    out_dir = Path(cfg.paths.output_dir)
    rank = rank_zero_only.rank
    if rank:  # another process of a distributed run (Lightning re-runs this job per device)
        out_dir = out_dir / f".rank{rank}"
    out_dir.mkdir(parents=True, exist_ok=True)
    task: Task = instantiate(cfg.task)
    if cfg.data.get("mismatched") and task.mismatched_refusal:
        raise ValueError(
            f"data.mismatched=true is not supported by task={cfg.task.name}: "
            f"{task.mismatched_refusal}; run it without data.mismatched"
        )
    # the data first: bad data or a missing cache fails before any logger run exists
    inputs = prepare(cfg, task)
    debug = is_debug_run(cfg)  # W&B and results.json say so: a smoke run's numbers are not results
    data = data_kind(cfg)  # demo or real: in the rows, results.json, the title and the tags
    with open_dict(cfg):
        cfg.tags = run_tags(cfg, family_name(cfg), data, debug)
    output: TaskOutput | None = None
    try:
        loggers = build_loggers(cfg)
        engine = build_engine(cfg, loggers, out_dir)
        keys = [k for k in cfg if k != "hydra"]  # tests compose with the hydra node attached
        resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
        for lg in loggers:
            lg.log_hyperparams(resolved)
        failed, shown = True, ""
        try:
            output = execute(task, inputs, engine, out_dir)
            marks = {"data": data, **({"debug": True} if debug else {})}
            output.rows = [{**row, **marks} for row in output.rows]
            trained = any("val_acc" in row for row in output.rows)
            probe = f" | {family_name(cfg)} probe" if trained else ""
            seeds = engine.seed_list()
            seed = f"seeds {','.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"
            title = f"{cfg.task.name} | {cfg.model.name}{probe} | {seed}"
            title += f" | {data} data"
            title += " | DEBUG RUN (one batch per stage: not results)" if debug else ""
            if rank:  # its own copy only: every rank holds the same synced results
                write_csv(output.rows, out_dir / "results.csv")
            else:
                images = Path(cfg.data.images) if cfg.data.get("images") else None
                shown, drawn = publish(output, loggers, out_dir, title, inputs, images)
            # results.json once every step before it succeeded; the W&B artifact holding it last
            write_run_results(output.rows, out_dir, FINISHED, data, rank=rank)
            if not rank:
                weights = sorted((out_dir / WEIGHTS_DIR).glob("*.pt"))
                files = [out_dir / "results.json", out_dir / "results.csv", *drawn, *weights]
                for wb in wandb_loggers(loggers):
                    log_results_artifact(wb.experiment, output.rows, inputs.readers, files)
            metric = _optimized_value(output, cfg.get("optimized_metric"))
            failed = False
        finally:
            _finish_wandb(loggers, failed)
    except BaseException as err:  # a step after training failed: results.json says so
        if output is not None:
            error = f"{type(err).__name__}: {err}"
            write_run_results(output.rows, out_dir, FAILED, data, error, rank=rank)
        raise
    finally:
        inputs.close()
    if shown:
        print(shown)
    return metric


def data_kind(cfg: DictConfig) -> str:
    """``demo`` (the synthetic set, built by vlprobe) or ``real``: whose numbers these are."""
    return "demo" if cfg.data.get("make_demo") else "real"


def is_debug_run(cfg: DictConfig) -> bool:
    """``debug=fast`` (or any ``trainer.fast_dev_run``): one batch per stage, not results."""
    return bool(OmegaConf.select(cfg, "trainer.fast_dev_run", default=False))


def _optimized_value(output: TaskOutput, metric: str | None) -> float | None:
    """``val/acc_best``: the best validation accuracy of any probe in the run."""
    values = [r["val_acc"] for r in output.rows if isinstance(r.get("val_acc"), float)]
    if metric == "val/acc_best" and values:
        return max(values)
    return output.summary.get(metric) if metric else None


def _finish_wandb(loggers: list[Any], failed: bool) -> None:
    """End the W&B run; a failed run is marked failed (exit code 1), not uploaded as done."""
    wandb_runs = wandb_loggers(loggers)
    if not wandb_runs or rank_zero_only.rank:  # other ranks hold no W&B run
        return
    import wandb

    from vlprobe.reporting.wandb_offline import wait_for_exit

    run_dir = Path(wandb_runs[0].experiment.dir).parent
    offline = bool(getattr(wandb_runs[0], "_offline", False))
    wandb.finish(exit_code=1 if failed else 0)
    if offline and not wait_for_exit(run_dir):  # finish() returns before the log is closed
        log.warning("W&B offline run %s: still no exit record, its log is incomplete", run_dir)
    if failed:
        print(f"W&B run marked failed: {run_dir}")
    elif offline:
        print(f"W&B offline run: {run_dir}\n  upload it with: wandb sync {run_dir}")
    else:
        print(f"W&B run files: {run_dir}")
