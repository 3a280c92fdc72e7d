"""From a composed config to a cache on disk: demo data if needed, examples, extraction.

The cache file name carries a hash of the settings that change its contents, so changing the
model, the data or a baseline setting (random weights, mismatched captions) never reuses a
stale cache; the input fingerprint stored inside (files and every builder setting) catches a
data set changed in place. One builder per cache at a time (a lock beside it): a second one
waits, then reuses what the first published.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from vlprobe import __version__
from vlprobe.cache.lock import exclusive_lock
from vlprobe.cache.reader import CacheError, cache_parts, open_cache_file
from vlprobe.cache.schema import PARTS, SCHEMA_VERSION, expand_parts, partial_files
from vlprobe.config import auto_device
from vlprobe.data.builders import (
    BuildStats,
    build_flickr_examples,
    build_senteval_examples,
    build_vg_examples,
    flickr_captions_by_image,
)
from vlprobe.data.errors import ProblemLog
from vlprobe.data.examples import VLExample
from vlprobe.data.region_features import load_region_features
from vlprobe.data.root import check_data_root
from vlprobe.data.senteval import SENTEVAL_TASKS
from vlprobe.extraction.fingerprint import differences, input_fingerprint, missing_inputs
from vlprobe.extraction.predict import extract
from vlprobe.hashing import content_hash, text_sha256
from vlprobe.intervention import settings as intervention
from vlprobe.models.hf_adapter import HFAdapter
from vlprobe.models.tokenization import text_model_version
from vlprobe.preflight import seed_of

log = logging.getLogger(__name__)

DATASET_KINDS = ("visual_genome", "flickr30k", *(f"senteval/{t}" for t in SENTEVAL_TASKS))
# where and how extraction runs, not what it computes: left out of the cache name and attributes
RUNTIME_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "shards", "progress")


def _plain(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def extraction_settings(cfg: DictConfig) -> dict:
    """``extraction`` settings that change the cache's contents (precision does, devices not)."""
    return {k: v for k, v in _plain(cfg.extraction).items() if k not in RUNTIME_KEYS}


def weights_seed(cfg: DictConfig) -> int | None:
    """The ``seed`` the model's weights are drawn from, None when every weight is read from files.

    A random-init model, an architecture given as ``config`` with no ``pretrained`` checkpoint
    (random weights, ``HFAdapter.build``), and a model with random parts (``random_parts``:
    visualbert-minilm's visual projection) is another model at another seed: it needs its own
    cache, or a sweep over ``seed`` would probe the first seed's model at every seed.
    """
    model = cfg.model
    architecture_only = "pretrained" in model and model.pretrained is None and model.get("config")
    if model.get("random_init") or model.get("random_parts") or architecture_only:
        return seed_of(cfg)
    return None


def model_settings(cfg: DictConfig) -> dict:
    """``model`` as it shapes the cache: its settings, and its weights' seed when it has one."""
    model = _plain(cfg.model)
    seed = weights_seed(cfg)
    return model if seed is None else {**model, "weights_seed": seed}


def cache_path(cfg: DictConfig, dataset: str) -> Path:
    """``<cache_dir>/<data>__<model>__<dataset>__<hash>.h5`` unless ``data.cache`` is set."""
    if cfg.data.get("cache"):
        return Path(cfg.data.cache)
    data = {k: v for k, v in _plain(cfg.data).items() if k not in ("cache", "strict")}
    key = json.dumps(
        {
            "data": data,
            "model": model_settings(cfg),
            "extraction": extraction_settings(cfg),
            "vlprobe": __version__,  # a new release may write other demo data or units
            "schema": SCHEMA_VERSION,
            **intervention.cache_key(cfg),  # the eraser and the cache it was fitted on
        },
        sort_keys=True,
    )
    digest = text_sha256(f"{dataset}|{key}", 10)
    kind = dataset.replace("/", "-") + intervention.name_tag(cfg)
    name = f"{cfg.data.name}__{cfg.model.name}__{kind}__{digest}.h5"
    return Path(cfg.paths.cache_dir) / name


def ensure_demo_data(cfg: DictConfig) -> None:
    """Write the synthetic VALUE-mini set at ``data.root`` if it is the demo and not current;
    a real data root must exist (checked before anything is read or locked)."""
    check_data_root(cfg.data)
    if not cfg.data.get("make_demo"):
        return
    from vlprobe.synthetic.stamp import build_demo

    build_demo(
        Path(cfg.data.root),
        scenes=cfg.data.scenes,
        seed=cfg.data.seed,
        feature_dim=cfg.data.feature_dim,
    )


def check_settings(cfg: DictConfig, dataset: str) -> None:
    """Settings that cannot give a usable cache, refused before any data is read or written."""
    if dataset not in DATASET_KINDS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASET_KINDS)}")
    fractions = [float(x) for x in cfg.data.vg_split]
    if dataset == "visual_genome" and (
        len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6
    ):
        raise ValueError(
            f"data.vg_split={fractions}: give train, val and test fractions, each > 0, "
            "summing to 1 (e.g. [0.8,0.1,0.1]); an empty split has nothing to test on"
        )


def input_sources(cfg: DictConfig, dataset: str) -> list[tuple[Path, bool]]:
    """The files and folders ``dataset`` is read from, each with whether to hash contents
    (not for image folders: stat only)."""
    data = cfg.data
    images = [(Path(data.images), False)] if data.get("images") else []
    if dataset == "visual_genome":
        captions = [(Path(data.flickr30k), True)] if data.captions == "flickr30k" else []
        return [(Path(data.visual_genome), True), (Path(data.features), True), *captions, *images]
    if dataset == "flickr30k":
        return [(Path(data.flickr30k), True), (Path(data.features), True), *images]
    if dataset.startswith("senteval/") and dataset.split("/", 1)[1] in SENTEVAL_TASKS:
        return [(Path(data.senteval) / SENTEVAL_TASKS[dataset.split("/", 1)[1]], True)]
    raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASET_KINDS)}")


def ensure_model(cfg: DictConfig) -> None:
    """Pre-train the model ``cfg`` names if vlprobe trains it (uniter-mini) and it is not yet
    saved: an explicit step, with its progress bar, before any fingerprint reads its weights.

    A second process wanting the same model waits for the first one's lock, then reuses it.
    """
    model = cfg.model
    if model.get("pretrain") is not None and not model.get("random_init"):
        from vlprobe.pretrain.uniter_mini import pretrain_from_config

        pretrain_from_config(model)


def model_sources(cfg: DictConfig) -> list[tuple[Path, bool]]:
    """The model's weight files, so that a cache of other weights under the same settings (a
    checkpoint replaced in place, uniter-mini pre-trained again) is noticed and rebuilt.

    Only reads: uniter-mini's checkpoint is where :func:`ensure_model` saved it (not there
    yet, it is a missing input, which the fingerprint records as such).
    """
    model = cfg.model
    if model.get("random_init"):
        return []
    if model.get("pretrain") is not None:
        from vlprobe.pretrain.uniter_mini import CHECKPOINT, PretrainSettings, model_folder

        settings = PretrainSettings(**OmegaConf.to_container(model.pretrain, resolve=True))
        return [(model_folder(settings, model.out_dir) / CHECKPOINT, True)]
    paths = [model.get(key) for key in ("pretrained", "checkpoint", "config", "tokenizer")]
    return [(Path(p), True) for p in paths if isinstance(p, str) and Path(p).exists()]


def fingerprint(cfg: DictConfig, dataset: str) -> dict:
    """The inputs of ``dataset``'s cache: files (data and weights), and every setting that
    builds it."""
    data = {k: v for k, v in _plain(cfg.data).items() if k != "cache"}
    settings = {
        "dataset": dataset,
        "data": data,
        "model": model_settings(cfg),
        "extraction": extraction_settings(cfg),
        "vlprobe": __version__,
        "text_model": text_model_version(),
        **intervention.cache_key(cfg),
    }
    return input_fingerprint(input_sources(cfg, dataset) + model_sources(cfg), settings)


def _held_parts(path: Path) -> frozenset[str]:
    """The parts a readable cache at ``path`` holds (none when there is no such cache)."""
    try:
        with open_cache_file(path) as f:
            return cache_parts(f)
    except CacheError:
        return frozenset()


def stale_reason(path: Path, current: dict, parts: frozenset[str] = frozenset()) -> str | None:
    """Why the cache at ``path`` cannot serve inputs ``current`` and ``parts`` (None: it can)."""
    if not path.exists():
        return f"no cache at {path}"
    try:
        f = open_cache_file(path)
    except CacheError as err:
        return f"cache {path} is unusable ({err})"
    with f:
        stored = f.attrs.get("input_fingerprint")
        lacking = sorted(parts - cache_parts(f))
    if lacking:
        return f"cache {path} lacks {', '.join(lacking)}, which this run reads"
    if stored is None:
        return f"cache {path} has no input fingerprint (an older vlprobe wrote it)"
    gone = missing_inputs(current)
    if gone:
        log.warning("reusing %s: its inputs %s are not there to check", path, ", ".join(gone))
        return None
    changes = differences(json.loads(stored), current)
    if changes:
        more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
        return f"cache {path} is stale: {changes[0]}{more}"
    return None


def load_examples(cfg: DictConfig, dataset: str) -> tuple[list[VLExample], list[Path]]:
    """Read the raw data set with the real readers; returns examples and the files read."""
    data = cfg.data
    problems, stats = ProblemLog(), BuildStats()
    common = {"strict": data.strict, "problems": problems}
    if dataset in ("visual_genome", "flickr30k"):
        features = load_region_features(Path(data.features), **common)
        visual = {
            "tie_mode": data.tie_mode,
            "iou_threshold": data.iou_threshold,
            "mismatched": data.mismatched,
            "seed": data.seed,
            "image_dir": Path(data.images) if data.get("images") else None,
            "stats": stats,
            **common,
        }
    if dataset == "visual_genome":
        captions = (
            flickr_captions_by_image(Path(data.flickr30k)) if data.captions == "flickr30k" else None
        )
        examples = build_vg_examples(
            Path(data.visual_genome),
            features,
            captions=captions,
            split_fractions=tuple(data.vg_split),
            **visual,
        )
        sources = [Path(data.visual_genome), Path(data.features)]
    elif dataset == "flickr30k":
        examples = build_flickr_examples(Path(data.flickr30k), features, **visual)
        sources = [Path(data.flickr30k), Path(data.features)]
    elif dataset.startswith("senteval/") and dataset.split("/", 1)[1] in SENTEVAL_TASKS:
        task = dataset.split("/", 1)[1]
        path = Path(data.senteval) / SENTEVAL_TASKS[task]
        examples = build_senteval_examples(path, task=task, **common)
        sources = [path]
    else:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASET_KINDS)}")
    log.info("%s: %d examples (%s)", dataset, len(examples), stats.summary())
    if len(problems):
        log.warning(problems.report())
    return examples, sources


def build_model(cfg: DictConfig) -> HFAdapter:
    """The adapter ``cfg.model`` describes: its ``_target_`` called with every key but ``name``
    and ``random_parts`` (labels, not arguments), and with ``seed``.

    Called directly rather than through ``instantiate``, which would wrap a missing checkpoint's
    ``FileNotFoundError`` (a one-line bad-input error, exit code 2) in its own exception.
    """
    model = _plain(cfg.model)
    model.pop("name", None)
    model.pop("random_parts", None)
    if model.get("device", "auto") == "auto":
        model["device"] = auto_device()
    build = get_method(model.pop("_target_"))
    return build(**model, seed=seed_of(cfg))


def parts_to_write(cfg: DictConfig, needed: Iterable[str]) -> frozenset[str]:
    """The parts a reader ``needed``, plus ``extraction.parts`` (``all``: every part)."""
    extra = cfg.extraction.get("parts")
    if extra == "all":
        return expand_parts(PARTS)
    return expand_parts([*needed, *(extra or [])])


def builder_lock(path: Path) -> AbstractContextManager[bool]:
    """The cache's lock, held by rank 0 for all processes of a distributed extraction.

    The other ranks (started by Lightning or srun) join rank 0's build, which holds the lock
    until it has merged their shards: waiting on it themselves would deadlock the group.
    """
    return exclusive_lock(path) if rank_zero_only.rank == 0 else nullcontext(False)


def _extract(cfg: DictConfig, dataset: str, out: Path, inputs: dict, parts: frozenset[str]) -> Path:
    """Build the cache (the caller holds its lock); partial files of killed builders go first."""
    for orphan in partial_files(out) if rank_zero_only.rank == 0 else []:  # under its lock
        log.info("removing %s, left by an interrupted extraction", orphan)
        orphan.unlink(missing_ok=True)
    examples, sources = load_examples(cfg, dataset)
    adapter = build_model(cfg)
    started = time.perf_counter()
    attrs = {
        "dataset_kind": dataset,
        "dataset_path": str(Path(cfg.data.root).resolve()) if cfg.data.get("root") else "",
        "dataset_hash": content_hash(sources),
        "input_fingerprint": inputs,
        "extraction_settings": {**extraction_settings(cfg), "data": _plain(cfg.data)},
    }
    with intervention.hook(cfg, adapter, examples):  # erases at its layer (none: no hook)
        path = extract(
            examples,
            adapter,
            out,
            attrs,
            batch_size=cfg.extraction.batch_size,
            dtype=cfg.extraction.dtype,
            max_attention_maps=cfg.extraction.max_attention_maps,
            progress=cfg.extraction.progress,
            trainer={k: cfg.extraction[k] for k in RUNTIME_KEYS[:4] + ("precision",)},
            shards=cfg.extraction.shards,
            parts=parts,
        )
    if rank_zero_only.rank == 0:  # the other ranks wrote shards, not the cache
        log.info(
            "cache written: %s (%d examples, %.1f s)",
            path,
            len(examples),
            time.perf_counter() - started,
        )
    return path


def run_extraction(cfg: DictConfig, dataset: str, out: Path | None = None) -> Path:
    """Build the cache for ``dataset`` at ``out`` (default: :func:`cache_path`), always, with
    ``extraction.parts`` (unset: every part; no task says what it reads here)."""
    check_settings(cfg, dataset)
    ensure_demo_data(cfg)
    ensure_model(cfg)
    cfg = intervention.fitted(cfg)
    out = out or cache_path(cfg, dataset)
    inputs = fingerprint(cfg, dataset)  # before reading: a change during the build shows later
    parts = parts_to_write(cfg, PARTS if cfg.extraction.get("parts") is None else ())
    with builder_lock(out):
        return _extract(cfg, dataset, out, inputs, parts)


def ensure_cache(cfg: DictConfig, dataset: str, parts: Iterable[str] = ()) -> Path:
    """The cache for ``dataset`` holding ``parts`` (what the task reads): reused when its
    inputs are unchanged and it holds them, else (re)built with them and the parts it had.

    A second process wanting the same cache waits for the first one's lock, then reuses it.
    """
    if cfg.data.get("cache") is None:
        cfg = intervention.fitted(cfg)  # an intervened cache is named by its eraser
    path = cache_path(cfg, dataset)
    if cfg.data.get("cache"):
        if not path.exists():
            raise FileNotFoundError(
                f"data.cache={path} does not exist: point it at a cache written by "
                "`vlprobe extract`, or leave data.cache=null to build one"
            )
        return path
    check_settings(cfg, dataset)
    ensure_demo_data(cfg)
    ensure_model(cfg)  # done already when prepare() called it; here for other callers
    inputs = fingerprint(cfg, dataset)
    needed = parts_to_write(cfg, parts)
    if stale_reason(path, inputs, needed) is None:
        return path
    with builder_lock(path) as waited:
        reason = stale_reason(path, inputs, needed)
        if reason is None:
            log.info("reusing %s: another process built it while this one waited", path)
            return path
        if waited:
            log.info("the other builder of %s did not leave a usable cache", path)
        log.info("%s: extracting %s with %s", reason, dataset, cfg.model.name)
        return _extract(cfg, dataset, path, inputs, needed | _held_parts(path))
