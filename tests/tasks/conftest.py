"""A tiny hand-written cache whose fusion, [CLS] and alignment answers are known exactly.

Three examples, 2 attention layers (3 hidden layers: emb, L01, L02), 2 heads, hidden size 4.
Every value is exact in float16 (the cache dtype), so the expected numbers are exact too.

- ``e0`` (train): 4 text + 4 image tokens, *mixed* at every hidden layer; 1 phrase, 2 regions.
- ``e1`` (test): 4 text + 4 image tokens; 3 phrases (the last one without a gold region),
  3 regions.
- ``e2`` (test): 4 text + 6 image tokens; 1 phrase, 2 regions.

Hidden states of the test examples: modalities far apart at layers 0 and 1 (NMI 1), mixed at
layer 2 (both clusters hold text and image in the same proportion: NMI 0).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig

from probes.run import build_engine
from probes.tasks.base import TaskInputs, TaskOutput
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.records import ExampleRecord, LabelVocab
from vlprobe.cache.writer import CacheWriter

A, H, D = 2, 2, 4  # attention layers, heads, hidden size
L = A + 1

# [CLS] mass [text, image] per (layer, head), one (A, H, 2) array per example
CLS_MASS = {
    "e0": [[[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]],
    "e1": [[[0.75, 0.25], [0.25, 0.75]], [[0.5, 0.5], [0.625, 0.375]]],
    "e2": [[[0.75, 0.25], [0.5, 0.5]], [[0.25, 0.75], [0.375, 0.625]]],
}

# phrase -> (gold regions, most attended region per (layer, head))
E0_PHRASES = [({0}, [[0, 0], [0, 0]])]
E1_PHRASES = [
    ({0}, [[0, 1], [0, 2]]),  # heads (0,0) and (1,0) right
    ({1, 2}, [[1, 0], [0, 2]]),  # heads (0,0) and (1,1) right
    (set(), [[0, 0], [0, 0]]),  # no gold region: not scored
]
E2_PHRASES = [({1}, [[1, 0], [1, 0]])]  # heads (0,0) and (1,0) right


def _hidden(n_text: int, n_image: int, separated_layers: set[int]) -> np.ndarray:
    """(L, T, D): separated = text at 0, image at 10; mixed = every modality split evenly
    between two far-apart points (k-means finds the points, which ignore modality)."""
    hidden = np.zeros((L, n_text + n_image, D), np.float32)
    for layer in range(L):
        if layer in separated_layers:
            hidden[layer, n_text:] = 10.0
        else:
            hidden[layer, n_text // 2 : n_text] = 10.0
            hidden[layer, n_text + n_image // 2 :] = 10.0
    return hidden


def _maps(modality: np.ndarray) -> np.ndarray:
    """(A, H, T, T) rows summing to 1; cross-modal share per head: [[0, 1], [0.5, 0.25]]."""
    t = len(modality)
    same = (modality[:, None] == modality[None, :]).astype(np.float32)
    other = 1.0 - same
    maps = np.zeros((A, H, t, t), np.float32)
    maps[0, 0] = same / same.sum(1, keepdims=True)
    maps[0, 1] = other / other.sum(1, keepdims=True)
    maps[1, 0] = 1.0 / t  # uniform: half the keys cross (equal counts per modality)
    maps[1, 1] = 0.75 * maps[0, 0] + 0.25 * maps[0, 1]
    return maps


def _record(
    name: str,
    split: str,
    n_text: int,
    n_image: int,
    separated_layers: set[int],
    n_regions: int,
    phrases: list[tuple[set[int], list[list[int]]]],
    keep_map: bool,
) -> ExampleRecord:
    modality = np.array([0] * n_text + [1] * n_image, np.int8)
    pairs = [(p, r) for p in range(len(phrases)) for r in range(n_regions)]
    attention = np.full((len(pairs), A, H, 2), 0.125, np.float32)
    for row, (p, r) in enumerate(pairs):
        target = np.asarray(phrases[p][1])
        attention[row, :, :, 0][target == r] = 0.5
    hidden = _hidden(n_text, n_image, separated_layers)
    return ExampleRecord.with_units(
        example_id=name,
        group_id=f"img_{name}",
        split=split,
        hidden=hidden,
        modality=modality,
        word_index=np.array([-1, 0, 1, -1] + [-1] * (n_text - 4 + n_image), np.int32),
        cls_mass=np.asarray(CLS_MASS[name], np.float32),
        region_emb=np.zeros((L, n_regions, D), np.float32),
        region_category=np.zeros(n_regions, np.int32),
        region_box=np.zeros((n_regions, 4), np.float32),
        phrase_emb=np.zeros((L, len(phrases), D), np.float32),
        phrase_type=np.zeros(len(phrases), np.int8),
        phrase_types=np.zeros((len(phrases), 8), bool),
        phrase_span=np.tile(np.array([[0, 1]], np.int32), (len(phrases), 1)),
        coref_phrase=np.array([p for p, _ in pairs], np.int64),
        coref_region=np.array([r for _, r in pairs], np.int64),
        coref_corefer=np.array([int(r in phrases[p][0]) for p, r in pairs], np.int8),
        coref_attention=attention,
        attention_map=_maps(modality) if keep_map else None,
    )


def write_tiny_cache(path: Path, with_maps: bool = True, model_kind: str = "single-stream") -> Path:
    prefix = "X" if model_kind == "two-stream" else "L"
    attrs = {
        "model_name": "tiny",
        "model_kind": model_kind,
        "num_layers": A,
        "num_heads": H,
        "hidden_size": D,
        "layer_names": [f"{prefix}00" if prefix == "X" else "emb"]
        + [f"{prefix}{i:02d}" for i in range(1, A + 1)],
        "dataset_kind": "flickr30k",
        "dataset_path": "tiny",
        "dataset_hash": "none",
        "extraction_settings": {"hand_written": True},
    }
    labels = LabelVocab(category=["thing"], predicate=[], sentence=[])
    with CacheWriter(path, attrs, labels) as writer:
        writer.add(_record("e0", "train", 4, 4, set(), 2, E0_PHRASES, keep_map=with_maps))
        writer.add(_record("e1", "test", 4, 4, {0, 1}, 3, E1_PHRASES, keep_map=with_maps))
        writer.add(_record("e2", "test", 4, 6, {0, 1}, 2, E2_PHRASES, keep_map=False))
    return path


@pytest.fixture
def tiny_cache(tmp_path: Path) -> Path:
    return write_tiny_cache(tmp_path / "tiny.h5")


@pytest.fixture
def make_tiny_cache(tmp_path: Path) -> Callable[..., Path]:
    def _make(name: str = "tiny_variant.h5", **kwargs) -> Path:
        return write_tiny_cache(tmp_path / name, **kwargs)

    return _make


class RecordingLogger:
    """Stands in for a Lightning logger: keeps every metric logged through it."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.update(metrics)


@pytest.fixture
def execute_task() -> Callable[[DictConfig, Path], tuple[TaskOutput, RecordingLogger]]:
    """Instantiate ``cfg.task`` and run its ``execute`` on the cache at ``path``."""

    def _execute(cfg: DictConfig, path: Path) -> tuple[TaskOutput, RecordingLogger]:
        logger = RecordingLogger()
        task = instantiate(cfg.task)
        (dataset,) = task.datasets()
        inputs = TaskInputs({"model": {dataset: CacheReader(path)}})
        try:
            engine = build_engine(cfg, [logger])
            out = task.execute(inputs, engine, Path(cfg.paths.output_dir))
        finally:
            inputs.close()
        return out, logger

    return _execute
