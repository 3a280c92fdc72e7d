"""Find run folders, read what they wrote, and aggregate probes over seeds and runs.

The data side of ``vlprobe report`` (figures and files are in :mod:`.report`). A *run* is one
training job: ``results.json`` plus the resolved config in ``.hydra/config.yaml``; an offline
W&B run folder stands in for a run whose results files were lost. A *group* is a set of runs
whose resolved configs are equal in everything but the seed and where they log: the report
averages a probe over a group's seeds and compares groups. Two runs of one group with the same
seed are refused (one seed would count twice); killed, failed and debug runs are skipped.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from scipy import stats

from vlprobe.analysis.stats import mean_std_ci
from vlprobe.reporting.identity import ProbeId
from vlprobe.reporting.labels import (
    PROBE,
    ROW_MODEL,
    group_labels,
    hashable,
    probe_spec,
    shown_keys,
    varying_capacity,
)
from vlprobe.reporting.run_results import FINISHED, read_run_results

log = logging.getLogger(__name__)

# config keys (and everything under them) that do not change a run's numbers: the seed, which
# a group averages over, and where and how a run logs; every other key tells groups apart
IGNORED_KEYS = (
    "seed",
    "seeds",
    "tags",
    "optimized_metric",
    "threads",
    "logger",
    "paths",
    "hydra",
    "extraction.progress",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "data.loader.num_workers",
    "data.loader.mode",
    "data.loader.memory_budget_mb",
    "loader.num_workers",
    "loader.mode",
    "loader.memory_budget_mb",
)
# metrics of training-free tasks, tried in order when a task's rows lack the asked metric
FALLBACK_METRICS = (
    "alignment_acc",
    "nmi_pooled",
    "nmi_per_example_mean",
    "text_share_normalised",
    "text_share",
)
# numeric row columns that label a probe rather than measure it
NOT_MEASURES = frozenset({"layer", "head", "seed", "seeds"})
SEED_SUFFIXES = ("_std", "_ci95", "_per_seed")


# ---------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One training job: its result rows and the (unresolved-safe) config it ran with."""

    path: Path
    config: DictConfig
    rows: list[dict[str, Any]]
    source: str = "results.json"
    exit_code: int | None = 0  # W&B runs: None without an exit record (killed)
    status: str = "finished"  # results.json's: "failed" when a step after training failed
    error: str | None = None
    rank: int = 0  # a distributed run's rank-r copy of its results (``.rank<r>/``)

    def get(self, key: str, default: Any = None) -> Any:
        """``key`` (dotted) of the config; interpolations that cannot resolve here read as
        ``default`` (Hydra saves ``${hydra:...}`` unresolved)."""
        value = OmegaConf.select(
            self.config, key, default=default, throw_on_resolution_failure=False
        )
        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, resolve=False)  # type: ignore[arg-type]
        return value

    @property
    def seed(self) -> Any:
        """The run's seed, or its list of seeds when it trained several in-run."""
        seeds = self.get("seeds")
        return seeds if isinstance(seeds, list) and seeds else self.get("seed")

    @property
    def task(self) -> str:
        """The rows' task name (shared by runs of one task family), else the config's."""
        for row in self.rows:
            if isinstance(row.get("task"), str):
                return row["task"]
        return str(self.get("task.name", "unknown"))


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders (with ``results.json``) and orphan offline W&B runs under ``paths``.

    An argument may be a run folder, a multirun folder, any parent (searched recursively) or an
    ``offline-run-*`` folder. An offline W&B run inside a run folder that has ``results.json`` is
    skipped: the results file is the complete record.
    """
    found: dict[Path, None] = {}
    for arg in paths:
        path = Path(arg)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if (path / "results.json").is_file() or _is_wandb_run(path):
            found[path.resolve()] = None
            continue
        for results in sorted(path.rglob("results.json"), key=_natural_key):
            found[results.parent.resolve()] = None
        for wandb_run in sorted(path.rglob("offline-run-*"), key=_natural_key):
            if _is_wandb_run(wandb_run) and not _owner_has_results(wandb_run):
                found[wandb_run.resolve()] = None
    return list(found)


def _natural_key(path: Path) -> list[Any]:
    """Multirun jobs 0, 1, ..., 10 in numeric order, not 0, 1, 10, 2."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _is_wandb_run(path: Path) -> bool:
    return path.is_dir() and path.name.startswith("offline-run-") and any(path.glob("run-*.wandb"))


def _owner_has_results(wandb_run: Path) -> bool:
    """``<run>/wandb/offline-run-*``: does ``<run>`` hold results.json?"""
    return (wandb_run.parent.parent / "results.json").is_file()


def load_run(path: str | Path) -> Run:
    """A run folder (``results.json`` + ``.hydra/config.yaml``) or an offline W&B run."""
    path = Path(path)
    if _is_wandb_run(path):
        return load_wandb_run(path)
    results = read_run_results(path / "results.json")
    config = _run_config(path)
    return Run(
        path, config, results.rows, status=results.status, error=results.error, rank=results.rank
    )


def _run_config(run_dir: Path) -> DictConfig:
    """``.hydra/config.yaml``; else the config logged to an offline W&B run; else empty."""
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        cfg = OmegaConf.load(hydra_cfg)
        return cfg if isinstance(cfg, DictConfig) else OmegaConf.create()
    for wandb_run in sorted(run_dir.glob("wandb/offline-run-*")):
        if _is_wandb_run(wandb_run):
            return _wandb_config(wandb_run)
    log.warning("%s has no .hydra/config.yaml: its model and seed are unknown", run_dir)
    return OmegaConf.create()


def _wandb_config(wandb_run: Path) -> DictConfig:
    from vlprobe.reporting.wandb_offline import read_offline_run

    config = read_offline_run(wandb_run).config
    return OmegaConf.create({k: v for k, v in config.items() if not k.startswith("_")})


def load_wandb_run(wandb_run: Path) -> Run:
    """Rows from the logged ``results`` table (its columns are the rows' fields). Without it
    the run is unreadable: summary metrics carry no probe identity."""
    from vlprobe.reporting.wandb_offline import read_offline_run

    offline = read_offline_run(wandb_run)
    config = OmegaConf.create({k: v for k, v in offline.config.items() if not k.startswith("_")})
    rows = _rows_from_table(wandb_run, _table_path(offline.summary))
    if not rows:
        raise ValueError(
            f"{wandb_run}: no logged results table (files/media/table/results_*.table.json) and "
            "no results.json: re-run it, or report the run folder that holds its results.json"
        )
    return Run(wandb_run, config, rows, "W&B results table", offline.exit_code)


def _table_path(summary: Mapping[str, Any]) -> str | None:
    """Where the logged ``results`` table lies inside ``files/`` (summary keys are flattened
    to ``results/path`` when read from the log)."""
    ref = summary.get("results")
    path = ref.get("path") if isinstance(ref, Mapping) else summary.get("results/path")
    return path if isinstance(path, str) else None


def _rows_from_table(wandb_run: Path, ref: str | None) -> list[dict[str, Any]] | None:
    """The ``results`` wandb.Table saved offline as ``files/<path>`` (columns + data)."""
    table = wandb_run / "files" / ref if ref else None
    if table is None or not table.is_file():
        return None
    content = json.loads(table.read_text(encoding="utf-8"))
    columns = content.get("columns", [])
    return [dict(zip(columns, values, strict=True)) for values in content.get("data", [])]


def is_debug(run: Run) -> bool:
    """Marked debug in its rows, or configured as a fast_dev_run (runs from before the mark)."""
    return any(row.get("debug") for row in run.rows) or bool(run.get("trainer.fast_dev_run"))


@dataclass(frozen=True)
class Skipped:
    """A run folder left out of the report, and why."""

    path: Path
    reason: str


def load_runs(paths: Sequence[str | Path]) -> tuple[list[Run], list[Skipped]]:
    """Every finished run under ``paths`` (see :func:`find_runs`), and the skipped ones: killed
    or failed W&B runs, debug runs (``trainer.fast_dev_run``, ``debug=...``) and unreadable
    folders are skipped with a warning so they never pass for results."""
    runs, skipped = [], []
    for path in find_runs(paths):
        try:
            run = load_run(path)
        except (OSError, ValueError) as err:
            skipped.append(Skipped(path, f"unreadable: {err}"))
            continue
        reason = unfinished_reason(run) or untyped_reason(run)
        if reason:
            skipped.append(Skipped(path, reason))
        else:
            runs.append(run)
    for skip in skipped:
        log.warning("skipping %s: %s", skip.path, skip.reason)
    if not runs:
        raise FileNotFoundError(
            f"no runs found under {', '.join(map(str, paths))}: expected run folders with "
            "results.json (logs/<task>/runs/<time>/, multirun job folders) or offline-run-* "
            "W&B folders"
            + (f" ({len(skipped)} skipped: {skipped[0].reason}, ...)" if skipped else "")
        )
    return runs, skipped


def unfinished_reason(run: Run) -> str | None:
    """Why ``run`` is no result (killed, failed, debug), or None."""
    if run.exit_code is None and run.source != "results.json":
        return "killed: its W&B run has no exit record and there is no results.json"
    if run.exit_code:
        return f"failed: W&B exit code {run.exit_code}"
    if run.rank or run.path.name.startswith(".rank"):
        return "another rank's copy of a distributed run's results (the run is the folder above)"
    if run.status != FINISHED:
        return f"{run.status}: {run.error or 'no error recorded'}"
    if is_debug(run):
        return "debug run (debug=fast / trainer.fast_dev_run: one batch per stage)"
    choices = run.path / ".hydra" / "hydra.yaml"
    if choices.is_file():
        debug = OmegaConf.select(OmegaConf.load(choices), "hydra.runtime.choices.debug")
        if debug not in (None, "null"):
            return f"debug run (debug={debug})"
    return None


def untyped_reason(run: Run) -> str | None:
    """Why ``run``'s rows cannot be reported (written before rows carried their probe identity
    as fields), or None."""
    if all(ProbeId.from_row(row) is not None and "family" in row for row in run.rows):
        return None
    return (
        "its rows have no probe identity (kind, layer, head, family): written by an older "
        "vlprobe; re-run it to include it"
    )


# ---------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """Runs alike in everything but the seed: ``key`` holds (config key, value) pairs."""

    key: tuple[tuple[str, Any], ...]
    label: str

    def value(self, key: str) -> Any:
        return dict(self.key).get(key)


def identity(run: Run, keys: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    return tuple((k, hashable(run.get(k))) for k in keys)


def config_keys(run: Run) -> list[str]:
    """The dotted leaf keys of the run's config that tell groups apart: all but
    ``IGNORED_KEYS`` and values taken from the seed (``task.seed: ${seed}``)."""
    raw = OmegaConf.to_container(run.config, resolve=False)
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif not _ignored(prefix) and not (isinstance(node, str) and _from_seed(node)):
            out.append(prefix)

    walk(raw, "")
    return out


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in IGNORED_KEYS)


def _from_seed(value: str) -> bool:
    return "${seed}" in value or "${seeds}" in value


def check_duplicate_seeds(runs: Sequence[Run], keys: Sequence[str]) -> None:
    """Refuse two runs of one group and task that share a seed: their mean would count that
    seed twice and their CI would be too narrow."""
    seen: dict[tuple, Path] = {}
    for run in runs:
        seeds = run.seed if isinstance(run.seed, list) else [run.seed]
        for seed in seeds:
            if seed is None:
                continue
            other = seen.setdefault((identity(run, keys), run.task, seed), run.path)
            if other != run.path:
                raise ValueError(
                    f"runs {other} and {run.path} have the same config and seed {seed}: "
                    "averaging them would count one seed twice; report one of them (pass the "
                    "other folder separately or remove it)"
                )


def varying_keys(keys: Sequence[tuple[tuple[str, Any], ...]]) -> list[str]:
    """The group keys whose value differs between some of ``keys`` (absent reads as None)."""
    values = [dict(key) for key in keys]
    names = list(dict.fromkeys(name for key in keys for name, _ in key))
    return [n for n in names if len({repr(v.get(n)) for v in values}) > 1]


def row_group_keys(run: Run, row: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What a row adds to its run's group: its probe (family and capacity, from the row's
    fields) and, for rows of another model inside a run (the linguistic task's text
    baseline), that model, tied to the run's group so two runs' baselines are not pooled."""
    out: tuple[tuple[str, Any], ...] = ((PROBE, probe_spec(row)),)
    model = row.get("model")
    if not isinstance(model, str) or row.get("role") == "model":
        return out
    own = str(run.get("model.name"))
    return out if model in (own, f"{own}[random-init]") else (*out, (ROW_MODEL, model))


# ---------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Stat:
    """Mean over seeds with sample std, Student-t 95% CI half-width and the number of seeds."""

    mean: float
    std: float = math.nan
    ci95: float = math.nan
    n: int = 1

    @property
    def low(self) -> float:
        return self.mean - self.ci95 if math.isfinite(self.ci95) else self.mean

    @property
    def high(self) -> float:
        return self.mean + self.ci95 if math.isfinite(self.ci95) else self.mean


NAN_STAT = Stat(math.nan, n=0)


def seed_stat(values: Iterable[Any], confidence: float = 0.95) -> Stat:
    """:func:`mean_std_ci` over the finite values (missing and NaN ones are dropped)."""
    x = np.array([float(v) for v in values if is_number(v) and math.isfinite(float(v))])
    if x.size == 0:
        return NAN_STAT
    mean, std, half = mean_std_ci(x, confidence)
    return Stat(float(mean), float(std), float(half), int(x.size))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def column_stat(rows: Sequence[Mapping[str, Any]], column: str) -> Stat:
    """One probe's ``column`` over the rows of a group's runs.

    A run trained with several seeds contributes its per-seed values (``<column>_per_seed``);
    a single such run keeps its own std and CI when it has no per-seed list.
    """
    if (
        len(rows) == 1
        and is_number(rows[0].get(f"{column}_std"))
        and not isinstance(rows[0].get(f"{column}_per_seed"), list)
    ):
        row = rows[0]
        n = len(row["seeds"]) if isinstance(row.get("seeds"), list) else 2  # a std needs 2
        ci = row.get(f"{column}_ci95")
        mean = row.get(column)
        return Stat(
            float(mean) if is_number(mean) else math.nan,
            float(row[f"{column}_std"]),
            float(ci) if is_number(ci) else math.nan,
            n,
        )
    values: list[Any] = []
    for row in rows:
        per_seed = row.get(f"{column}_per_seed")
        values += per_seed if isinstance(per_seed, list) else [row.get(column)]
    return seed_stat(values)


def welch_difference(a: Stat, b: Stat, confidence: float = 0.95) -> Stat:
    """``a - b`` with a Welch t interval (unequal variances, Welch-Satterthwaite df); the
    seeds of two groups are independent trainings, not paired measurements."""
    diff = a.mean - b.mean
    if a.n < 2 or b.n < 2 or not (math.isfinite(a.std) and math.isfinite(b.std)):
        return Stat(diff, n=min(a.n, b.n))
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Stat(diff, 0.0, 0.0, min(a.n, b.n))
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return Stat(diff, se, half, min(a.n, b.n))


# ---------------------------------------------------------------------------- aggregation
@dataclass
class Cell:
    """One probe of one task in one group, aggregated over the group's seeds."""

    group: Group
    task: str
    series: str  # e.g. ``identification/embedding`` (the rows' ``series``, after their stream)
    probe_id: ProbeId
    stats: dict[str, Stat] = field(default_factory=dict)
    seeds: tuple[Any, ...] = ()

    def get(self, column: str) -> Stat:
        return self.stats.get(column, NAN_STAT)

    @property
    def probe(self) -> str:
        """The display name (``layer_07``, ``L07H03``, ``all_heads``)."""
        return self.probe_id.name

    @property
    def layer(self) -> int | None:
        """The hidden-state index of a per-layer probe (0 = embeddings), else None."""
        return self.probe_id.layer if self.probe_id.kind == "layer" else None

    @property
    def head(self) -> tuple[int, int] | None:
        """``(layer, head)``, both 1-based, of a per-head probe, else None."""
        pid = self.probe_id
        return (pid.layer, pid.head) if pid.kind == "head" else None  # type: ignore[return-value]


def series_of(row: Mapping[str, Any]) -> str:
    """The row's ``series`` field (which probes of a task draw one curve), led by its
    ``stream`` (one stream of a multi-stream model is its own series)."""
    series = str(row.get("series") or "")
    stream = row.get("stream")
    if isinstance(stream, str) and stream:
        return f"{stream}/{series}" if series else stream
    return series


def measure_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Numeric columns worth a mean (not labels such as ``layer``, not seed spreads)."""
    columns: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if is_number(value) and key not in NOT_MEASURES and not key.endswith(SEED_SUFFIXES):
                columns[key] = None
    return list(columns)


def pick_metric(rows: Sequence[Mapping[str, Any]], metric: str) -> str:
    """``metric`` when the task's rows have it; else a training-free task's own measure."""
    present = {k for r in rows for k, v in r.items() if is_number(v)}
    if metric in present:
        return metric
    for candidate in FALLBACK_METRICS:
        if candidate in present:
            return candidate
    numeric = measure_columns(rows)
    return numeric[0] if numeric else metric


@dataclass
class Aggregate:
    """Everything the report draws: the groups, one cell per (group, task, series, probe), the
    metric per task and the identity keys that vary between groups."""

    runs: list[Run]
    groups: list[Group]
    cells: list[Cell]
    metrics: dict[str, str]  # task -> the metric reported for it
    keys: list[str]  # identity keys
    varying: list[str]  # identity keys that differ between groups
    run_groups: dict[Path, Group] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    #: the ablation axes: varying keys the labels need (not those implied by another)
    axes: list[str] = field(default_factory=list)

    def select(self, **where: Any) -> list[Cell]:
        return [c for c in self.cells if all(getattr(c, k) == v for k, v in where.items())]

    def series(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys((c.task, c.series) for c in self.cells))


def aggregate(
    runs: Sequence[Run], metric: str = "test_acc", compare_by: Sequence[str] = ()
) -> Aggregate:
    """Group runs by identity (every config key but ``IGNORED_KEYS``, plus ``compare_by``, plus
    the rows' probe family and capacity), then aggregate each probe over the group's runs:
    every numeric column becomes a :class:`Stat`. Raises if two runs of a group share a seed."""
    keys = sorted({*(k for run in runs for k in config_keys(run)), *compare_by})
    unknown = [k for k in compare_by if all(run.get(k) is None for run in runs)]
    if unknown:
        raise ValueError(f"compare-by key(s) {unknown} are in no run's config (a typo?)")
    check_duplicate_seeds(runs, keys)
    bucket: dict[tuple, list[tuple[Run, dict[str, Any]]]] = {}
    run_keys: dict[Path, tuple] = {}
    for run in runs:
        base = identity(run, keys)
        for row in run.rows:
            extra = row_group_keys(run, row)
            group_key = (*base, *extra)
            if all(k != ROW_MODEL for k, _ in extra):
                run_keys.setdefault(run.path, group_key)
            probe_id = ProbeId.from_row(row)
            bucket.setdefault((group_key, run.task, series_of(row), probe_id), []).append(
                (run, row)
            )
    group_keys = list(dict.fromkeys(k[0] for k in bucket))
    varying = [k for k in varying_keys(group_keys) if k != ROW_MODEL]
    labels = group_labels([dict(k) for k in group_keys], varying)
    groups = {k: Group(k, text) for k, text in zip(group_keys, labels, strict=True)}
    metrics = {
        task: pick_metric([row for run in runs if run.task == task for row in run.rows], metric)
        for task in dict.fromkeys(run.task for run in runs)
    }
    cells = []
    for (group_key, task, series, probe_id), members in bucket.items():
        rows = [row for _, row in members]
        cell = Cell(groups[group_key], task, series, probe_id)
        cell.stats = {c: column_stat(rows, c) for c in measure_columns(rows)}
        cell.seeds = tuple(run.seed for run, _ in members)
        cells.append(cell)
    run_groups = {path: groups[key] for path, key in run_keys.items()}
    specs = [dict(k)[PROBE] for k in group_keys]
    axes = shown_keys([dict(k) for k in group_keys], varying, varying_capacity(specs))
    return Aggregate(
        list(runs), list(groups.values()), cells, metrics, keys, varying, run_groups, axes=axes
    )
