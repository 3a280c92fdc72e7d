"""Linguistic probing on hand-built SentEval caches: one per (model, task), known best layer.

The run's model carries each task's label in the ``[CLS]`` vector of one layer (a different
layer per task); the baseline cache carries it at another layer. Mean vectors are noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import open_dict

from probes.prepare import baseline_config, cache_paths
from probes.run import run
from probes.tasks.linguistic import LinguisticTask
from vlprobe.cache.records import ExampleRecord, LabelVocab
from vlprobe.cache.writer import CacheWriter
from vlprobe.extraction.pipeline import cache_path
from vlprobe.reporting.run_results import read_run_results

A, H, D = 3, 2, 16
L = A + 1
LABELS = {"bigram_shift": ["I", "O"], "past_present": ["PAST", "PRES"]}
# (role, task) -> hidden layer whose [CLS] vector carries the label
SIGNAL = {
    ("model", "bigram_shift"): 1,
    ("model", "past_present"): 3,
    ("baseline", "bigram_shift"): 2,
    ("baseline", "past_present"): 2,
}


def write_senteval_cache(
    path: Path, task: str, signal_layer: int, sentences: int = 400, seed: int = 0
) -> Path:
    """Splits 60/20/20 by sentence; the label is planted in one layer's [CLS] vector."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=D)
    attrs = {
        "model_name": "planted",
        "model_kind": "text-only",
        "model_revision": "synthetic",
        "model_config_hash": "none",
        "num_layers": A,
        "num_heads": H,
        "hidden_size": D,
        "layer_names": ["emb", *(f"L{i:02d}" for i in range(1, A + 1))],
        "dataset_kind": f"senteval/{task}",
        "dataset_path": "planted",
        "dataset_hash": f"seed{seed}",
        "extraction_settings": {"planted": True},
    }
    vocab = LabelVocab(category=[], predicate=[], sentence=LABELS[task])
    with CacheWriter(path, attrs, vocab) as writer:
        for i in range(sentences):
            label = int(rng.integers(0, 2))
            cls = rng.normal(size=(L, 1, D))
            cls[signal_layer, 0] += 3.0 * (2 * label - 1) * direction
            writer.add(
                ExampleRecord.with_units(
                    example_id=f"{task}:{i + 1}",
                    group_id=f"sentence {i}",
                    split="train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test"),
                    hidden=rng.normal(size=(L, 4, D)),
                    modality=np.zeros(4, np.int8),
                    word_index=np.array([-1, 0, 1, -1], np.int32),
                    cls_mass=np.full((A, H, 2), 0.5),
                    sentence_cls=cls,
                    sentence_mean=rng.normal(size=(L, 1, D)),
                    sentence_label=np.array([label], np.int32),
                )
            )
    return path


@pytest.fixture(scope="module")
def senteval_caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """``task.caches``: role -> SentEval task -> path."""
    root = tmp_path_factory.mktemp("senteval")
    caches: dict[str, dict[str, str]] = {"model": {}, "baseline": {}}
    for (role, task), layer in SIGNAL.items():
        seed = len(caches[role]) + (10 if role == "baseline" else 0)
        path = write_senteval_cache(root / f"{role}-{task}.h5", task, layer, seed=seed)
        caches[role][task] = str(path)
    return caches


def _cfg(compose_cfg, caches: dict | None, *overrides: str):
    cfg = compose_cfg(
        [
            "task=linguistic/all",
            "task.tasks=[bigram_shift,past_present]",
            "logger=csv",
            "trainer=cpu",
            "trainer.max_epochs=10",
            "loader.batch_size=64",
            *overrides,
        ]
    )
    with open_dict(cfg):
        cfg.task.caches = caches
    return cfg


def test_linguistic_all_finds_each_models_layer(compose_cfg, senteval_caches) -> None:
    cfg = _cfg(compose_cfg, senteval_caches)
    run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = read_run_results(out / "results.json").rows
    model_name = cfg.model.name
    assert {r["model"] for r in rows} == {model_name, "text"}
    assert len(rows) == 2 * 2 * 2 * L  # roles x tasks x poolings x layers
    for (role, task), layer in SIGNAL.items():
        cls = {
            r["layer"]: r["test_acc"]
            for r in rows
            if (r["role"], r["probing_task"], r["pooling"]) == (role, task, "cls")
        }
        assert max(cls, key=cls.get) == layer, (role, task, cls)
        assert cls[layer] > 0.95 and max(v for k, v in cls.items() if k != layer) < 0.75
        mean = [
            r["test_acc"]
            for r in rows
            if (r["role"], r["probing_task"], r["pooling"]) == (role, task, "mean")
        ]
        assert max(mean) < 0.75  # the mean vectors are noise
    assert rows[0]["layer_name"] == "emb" and {r["task"] for r in rows} == {"linguistic"}
    first = rows[0]  # identity as fields: hidden state 0 = the embeddings
    assert (first["kind"], first["layer"], first["head"], first["family"]) == (
        "layer",
        0,
        None,
        "linear",
    )
    assert first["capacity"] == {} and first["series"] == "bigram_shift/cls"
    for key in ("bigram_shift_by_layer", "past_present_by_layer"):
        assert (out / f"{key}.png").stat().st_size > 0
    for model in (model_name, "text"):
        for pooling in ("cls", "mean"):
            assert (out / f"heatmap_{model}_{pooling}.png").stat().st_size > 0


def test_linguistic_single_task_without_baseline(compose_cfg, senteval_caches) -> None:
    caches = {"model": {"past_present": senteval_caches["model"]["past_present"]}}
    cfg = compose_cfg(
        [
            "task=linguistic/past_present",
            "task.baseline_model=null",
            "task.pooling=[cls]",
            "probing.layers=[0,3]",
            "logger=none",
            "trainer=cpu",
            "trainer.max_epochs=4",
        ]
    )
    with open_dict(cfg):
        cfg.task.caches = caches
    run(cfg)
    rows = read_run_results(Path(cfg.paths.output_dir) / "results.json").rows
    assert [(r["role"], r["probing_task"], r["layer_name"], r["layer"]) for r in rows] == [
        ("model", "past_present", "emb", 0),
        ("model", "past_present", "L03", 3),
    ]


def test_baseline_config_swaps_the_model_and_its_cache(compose_cfg) -> None:
    cfg = compose_cfg(["task=linguistic/all"])
    base = baseline_config(cfg, "text")
    assert base.model.name == "text" and cfg.model.name != "text"
    assert cache_path(base, "senteval/bigram_shift") != cache_path(cfg, "senteval/bigram_shift")
    with pytest.raises(ValueError, match="choices"):
        baseline_config(cfg, "no_such_model")


def test_one_data_cache_cannot_serve_several_caches(compose_cfg, senteval_caches) -> None:
    cfg = _cfg(compose_cfg, None, f"data.cache={senteval_caches['model']['bigram_shift']}")
    task = LinguisticTask(tasks=("bigram_shift", "past_present"))
    with pytest.raises(ValueError, match="task.caches"):
        cache_paths(cfg, task)


def test_swapped_cache_is_refused(compose_cfg, senteval_caches) -> None:
    swapped = {"model": {"bigram_shift": senteval_caches["model"]["past_present"]}}
    cfg = _cfg(compose_cfg, swapped, "task.tasks=[bigram_shift]", "task.baseline_model=null")
    with pytest.raises(ValueError, match="not senteval/bigram_shift"):
        run(cfg)
