"""From a composed config to a cache on disk: demo data if needed, examples, extraction.

The cache file name carries a hash of everything that changes its contents, so changing the
model, the data or a baseline setting (random weights, mismatched captions) never reuses a
stale cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from vlprobe import __version__
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
from vlprobe.data.senteval import SENTEVAL_TASKS
from vlprobe.extraction.extract import content_hash, extract
from vlprobe.models.hf_adapter import HFAdapter

log = logging.getLogger(__name__)

DATASET_KINDS = ("visual_genome", "flickr30k", *(f"senteval/{t}" for t in SENTEVAL_TASKS))


def _plain(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def cache_path(cfg: DictConfig, dataset: str) -> Path:
    """``<cache_dir>/<data>__<model>__<dataset>__<hash>.h5`` unless ``data.cache`` is set."""
    if cfg.data.get("cache"):
        return Path(cfg.data.cache)
    data = {k: v for k, v in _plain(cfg.data).items() if k not in ("cache", "strict")}
    key = json.dumps(
        {
            "data": data,
            "model": _plain(cfg.model),
            "extraction": _plain(cfg.extraction),
            "vlprobe": __version__,  # a new release may write other demo data or units
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(f"{dataset}|{key}".encode()).hexdigest()[:10]
    name = f"{cfg.data.name}__{cfg.model.name}__{dataset.replace('/', '-')}__{digest}.h5"
    return Path(cfg.paths.cache_dir) / name


def ensure_demo_data(cfg: DictConfig) -> None:
    """Write the synthetic VALUE-mini set at ``data.root`` if it is the demo and not current."""
    if not cfg.data.get("make_demo"):
        return
    from vlprobe.synthetic import make_demo_data
    from vlprobe.synthetic.stamp import demo_settings, is_current, write_stamp

    root = Path(cfg.data.root)
    settings = demo_settings(cfg.data.scenes, cfg.data.seed, cfg.data.feature_dim)
    if is_current(root, settings):
        return
    log.info("building the demo data set (%d scenes) at %s", cfg.data.scenes, root)
    make_demo_data(
        root, scenes=cfg.data.scenes, seed=cfg.data.seed, feature_dim=cfg.data.feature_dim
    )
    write_stamp(root, settings)


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
        path = Path(data.senteval) / SENTEVAL_TASKS[dataset.split("/", 1)[1]]
        examples = build_senteval_examples(path, **common)
        sources = [path]
    else:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASET_KINDS)}")
    log.info("%s: %d examples (%s)", dataset, len(examples), stats.summary())
    if len(problems):
        log.warning(problems.report())
    return examples, sources


def build_model(cfg: DictConfig) -> HFAdapter:
    """The adapter ``cfg.model`` describes: its ``_target_`` called with every key but ``name``.

    Called directly rather than through ``instantiate``, which would wrap a missing checkpoint's
    ``FileNotFoundError`` (a one-line bad-input error, exit code 2) in its own exception.
    """
    model = _plain(cfg.model)
    model.pop("name", None)
    if model.get("device", "auto") == "auto":
        model["device"] = auto_device()
    build = get_method(model.pop("_target_"))
    return build(**model, seed=cfg.get("seed", 0))


def run_extraction(cfg: DictConfig, dataset: str, out: Path | None = None) -> Path:
    """Build the cache for ``dataset`` at ``out`` (default: :func:`cache_path`)."""
    ensure_demo_data(cfg)
    out = out or cache_path(cfg, dataset)
    examples, sources = load_examples(cfg, dataset)
    adapter = build_model(cfg)
    started = time.perf_counter()
    attrs = {
        "dataset_kind": dataset,
        "dataset_path": str(Path(cfg.data.root).resolve()) if cfg.data.get("root") else "",
        "dataset_hash": content_hash(sources),
        "extraction_settings": {**_plain(cfg.extraction), "data": _plain(cfg.data)},
    }
    path = extract(
        examples,
        adapter,
        out,
        attrs,
        batch_size=cfg.extraction.batch_size,
        dtype=cfg.extraction.dtype,
        max_attention_maps=cfg.extraction.max_attention_maps,
        progress=cfg.extraction.progress,
    )
    log.info(
        "cache written: %s (%d examples, %.1f s)",
        path,
        len(examples),
        time.perf_counter() - started,
    )
    return path


def ensure_cache(cfg: DictConfig, dataset: str) -> Path:
    """The cache for ``dataset``, extracted first if it does not exist yet."""
    path = cache_path(cfg, dataset)
    if path.exists():
        return path
    if cfg.data.get("cache"):
        raise FileNotFoundError(
            f"data.cache={path} does not exist: point it at a cache written by `vlprobe extract`, "
            "or leave data.cache=null to build one"
        )
    log.info("no cache at %s: extracting %s with %s", path, dataset, cfg.model.name)
    return run_extraction(cfg, dataset, path)
