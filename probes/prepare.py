"""The one step that writes data before any training: demo data, pre-training, extraction,
opening caches.

A task declares the data sets it reads (``task.datasets()``) and, optionally, a second model
probed beside the run's (``task.baseline_model``, a name in ``configs/model/``) and caches given
by path (``task.caches``); everything else is extracted here with ``ensure_cache``. Tasks only
read what this step opens, so a failing data set fails before any logger run exists.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from probes.tasks.base import Task, TaskInputs
from probes.tasks.streams import cache_streams, sequence_readers, usable_streams
from vlprobe.cache.leakage import check_no_leakage
from vlprobe.cache.reader import CacheReader
from vlprobe.config import config_dir
from vlprobe.extraction.pipeline import ensure_cache, ensure_demo_data, ensure_model
from vlprobe.intervention.settings import active, with_intervention
from vlprobe.preflight import check_run_inputs

log = logging.getLogger(__name__)

ROLES = ("model", "baseline")


def model_roles(cfg: DictConfig, task: Task) -> list[tuple[str, DictConfig]]:
    """``(role, config)``: the run's model, then the task's baseline (its model group swapped),
    then the same model under each intervention the task asks for (``task.interventions()``:
    role -> ``configs/intervention/`` settings; task=concept_erasure)."""
    out = [("model", cfg)]
    interventions = getattr(task, "interventions", dict)()
    if interventions and active(cfg) is not None:
        raise ValueError(
            f"task={task.name} runs its own interventions: leave intervention=none "
            f"(got intervention={cfg.intervention.kind})"
        )
    baseline = getattr(task, "baseline_model", None)
    if baseline:
        base = baseline_config(cfg, baseline)
        if OmegaConf.to_container(base.model, resolve=True) == OmegaConf.to_container(
            cfg.model, resolve=True
        ):
            log.info("baseline %s is the run's model: probed once", baseline)
        else:
            out.append(("baseline", base))
    out += [(role, with_intervention(cfg, s)) for role, s in interventions.items()]
    return out


def baseline_config(cfg: DictConfig, model: str) -> DictConfig:
    """``cfg`` with its ``model`` group replaced by ``configs/model/<model>.yaml``."""
    path = config_dir() / "model" / f"{model}.yaml"
    if not path.exists():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"task.baseline_model={model!r}: no {path}; choices: {choices}")
    model_cfg = OmegaConf.load(path)
    if "defaults" in model_cfg:
        raise ValueError(f"{path} has a defaults list: not supported as a baseline model")
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.model = model_cfg
    return out


def model_label(model: DictConfig) -> str:
    return f"{model.name}[random-init]" if model.get("random_init") else str(model.name)


def cache_paths(cfg: DictConfig, task: Task) -> dict[str, dict[str, Path]]:
    """role -> data set -> cache: from ``task.caches`` where given, else extracted now (each
    model that vlprobe pre-trains is pre-trained first, explicitly)."""
    given_cfg = getattr(task, "caches", None) or {}
    bad = [r for r in given_cfg if r not in ROLES]
    if bad:
        raise ValueError(f"task.caches: unknown {bad}; valid choices: {', '.join(ROLES)}")
    given = {role: dict(tasks or {}) for role, tasks in given_cfg.items()}
    models = model_roles(cfg, task)
    datasets = task.datasets()
    short = {d: d.split("/", 1)[-1] for d in datasets}  # task.caches keys: senteval task names
    missing = [(r, d) for r, _ in models for d in datasets if short[d] not in given.get(r, {})]
    if cfg.data.get("cache") and len(missing) > 1:
        raise ValueError(
            f"data.cache names one file, but {task.name} needs {len(missing)} caches "
            f"({', '.join(f'{r}/{short[d]}' for r, d in missing)}): give them as "
            "task.caches={model: {<task>: path}, baseline: {<task>: path}}"
        )
    paths: dict[str, dict[str, Path]] = {}
    for role, run_cfg in models:
        if any(r == role for r, _ in missing) and not cfg.data.get("cache"):
            # the data, then the model it pre-trains on it (uniter-mini, with its progress
            # bar), before any cache's fingerprint reads the model's weights
            ensure_demo_data(run_cfg)
            ensure_model(run_cfg)
        for dataset in datasets:
            path = given.get(role, {}).get(short[dataset])
            if path is None:
                path = ensure_cache(run_cfg, dataset, parts=task.reads)
            elif not Path(path).exists():
                raise FileNotFoundError(
                    f"task.caches.{role}.{short[dataset]}={path} does not exist"
                )
            paths.setdefault(role, {})[dataset] = Path(path)
    return paths


def check_cache_model(cfg: DictConfig, reader: CacheReader) -> None:
    """``data.cache`` holding another model's features is refused: the rows, the title and W&B
    would name the configured model (the default, visualbert-minilm, when none was given)."""
    held = str(reader.file.attrs.get("model_name", ""))
    configs = {
        p.stem: OmegaConf.load(p).get("name")
        for p in sorted((config_dir() / "model").glob("*.yaml"))
    }
    if held != cfg.model.name and held in configs.values():  # a test cache's "planted" passes
        choice = next(stem for stem, name in configs.items() if name == held)
        raise ValueError(
            f"data.cache={reader.path} holds features of {held}, but the run's model is "
            f"{cfg.model.name}: add model={choice} (the model of the cache) so that the results "
            "are labelled with the model they come from"
        )


def streams_asked(cfg: DictConfig) -> bool:
    """The run named the streams of a multi-stream model (``model.stream`` other than all)."""
    return OmegaConf.select(cfg, "model.stream", default="all") != "all"


def prepare(cfg: DictConfig, task: Task) -> TaskInputs:
    """Every cache the task reads, built if missing, opened and checked for split leakage;
    the streams the task runs on (``inputs.streams``)."""
    paths = cache_paths(cfg, task)
    labels = {role: model_label(run_cfg.model) for role, run_cfg in model_roles(cfg, task)}
    if labels.get("baseline") == labels["model"]:  # same name, other settings
        labels["baseline"] += "[baseline]"
    for role in labels.keys() - set(ROLES):  # the task's interventions
        labels[role] = f"{labels['model']}[{role}]"
    inputs = TaskInputs({}, labels)
    try:
        for role, by_dataset in paths.items():
            for dataset, path in by_dataset.items():
                reader = CacheReader(path)
                inputs.readers.setdefault(role, {})[dataset] = reader
                if role == "model" and cfg.data.get("cache"):
                    check_cache_model(cfg, reader)
                reader.require(task.reads, task.name)
        if cache_streams(inputs):  # checked once: a stream asked for that it cannot read fails now
            inputs.streams = usable_streams(task, inputs, streams_asked(cfg), report=print)
        sequences = sequence_readers(inputs)  # each stream of a multi-stream cache
        try:
            for reader in sequences:
                check_no_leakage(reader)
            check_run_inputs(cfg, sequences)
        finally:
            for reader in sequences:
                if reader.stream is not None:  # opened here; the caches stay open
                    reader.close()
    except Exception:
        inputs.close()
        raise
    return inputs
