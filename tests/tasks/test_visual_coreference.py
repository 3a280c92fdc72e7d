"""Visual coreference on a hand-built Flickr30k-like cache with a known answer.

Only hidden layer ``TYPE_LAYER`` carries the phrase type (linearly, in the phrase embeddings)
and only attention head ``COREF_HEAD`` carries coreference (phrase -> region attention).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probes.run import run
from probes.tasks.visual_coreference import VisualCoreferenceTask, balanced_identification
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.records import ExampleRecord, LabelVocab
from vlprobe.cache.writer import CacheWriter
from vlprobe.reporting.run_results import read_run_results

A, H, D = 3, 3, 16  # attention layers, heads, hidden size
L = A + 1
TYPE_LAYER = 2
COREF_HEAD = (2, 1)  # 1-based attention layer, 0-based head: probe name L02H02
REGIONS, PHRASES = 4, 3


def image_split(image: int) -> str:
    return "train" if image % 10 < 7 else ("val" if image % 10 < 9 else "test")


def _record(image: int, rng: np.random.Generator, direction: np.ndarray) -> ExampleRecord:
    types = rng.integers(0, 8, PHRASES)
    multi = np.zeros((PHRASES, 8), bool)
    multi[np.arange(PHRASES), types] = True
    multi[0, (types[0] + 1) % 8] = True  # the first phrase of every image has a second type
    gold = [{int(r)} for r in rng.integers(0, REGIONS, PHRASES)]
    gold[1].add((min(gold[1]) + 1) % REGIONS)  # and the second phrase two gold regions
    pairs = [(p, r) for p in range(PHRASES) for r in range(REGIONS)]
    corefer = np.array([int(r in gold[p]) for p, r in pairs], np.int8)
    phrase_emb = rng.normal(size=(L, PHRASES, D))
    phrase_emb[TYPE_LAYER] += 4.0 * direction[types]
    attention = rng.uniform(0, 0.2, size=(len(pairs), A, H, 2))
    layer, head = COREF_HEAD
    attention[:, layer - 1, head, 0] = np.where(corefer == 1, 0.8, 0.05)
    attention[:, layer - 1, head, 0] += rng.normal(0, 0.05, len(pairs))
    tokens = 6 + REGIONS
    return ExampleRecord.with_units(
        example_id=f"img{image}:0",
        group_id=f"img{image}",
        split=image_split(image),
        hidden=rng.normal(size=(L, tokens, D)),
        modality=np.array([0] * 6 + [1] * REGIONS, np.int8),
        word_index=np.array([-1, 0, 1, 2, 3, -1] + [-1] * REGIONS, np.int32),
        cls_mass=np.full((A, H, 2), 0.5),
        region_emb=rng.normal(size=(L, REGIONS, D)),
        region_category=np.zeros(REGIONS, np.int32),
        region_box=np.zeros((REGIONS, 4), np.float32),
        phrase_emb=phrase_emb,
        phrase_type=types.astype(np.int8),
        phrase_types=multi,
        phrase_span=np.array([[0, 1], [1, 2], [2, 4]], np.int32),
        phrase_grounding=np.zeros((PHRASES, A, H), np.float32),
        phrase_grounding_chance=np.full(PHRASES, 1 / REGIONS, np.float32),
        coref_phrase=np.array([p for p, _ in pairs], np.int64),
        coref_region=np.array([r for _, r in pairs], np.int64),
        coref_corefer=corefer,
        coref_attention=attention,
    )


def write_coref_cache(path: Path, num_images: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(8, D))
    attrs = {
        "model_name": "planted",
        "model_kind": "single-stream",
        "model_revision": "synthetic",
        "model_config_hash": "none",
        "num_layers": A,
        "num_heads": H,
        "hidden_size": D,
        "layer_names": ["emb", *(f"L{i:02d}" for i in range(1, A + 1))],
        "dataset_kind": "flickr30k",
        "dataset_path": "planted",
        "dataset_hash": f"seed{seed}",
        "extraction_settings": {"planted": True},
    }
    labels = LabelVocab(category=["thing"], predicate=[], sentence=[])
    with CacheWriter(path, attrs, labels) as writer:
        for image in range(num_images):
            writer.add(_record(image, rng, direction))
            if image % 64 == 63:
                writer.flush()
    return path


@pytest.fixture(scope="module")
def coref_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coref_cache(tmp_path_factory.mktemp("coref") / "coref.h5")


def test_coref_labels_and_splits(coref_cache: Path) -> None:
    reader = CacheReader(coref_cache)
    phrase = reader.array("pairs/coref/phrase")
    corefer = reader.array("pairs/coref/corefer").astype(bool)
    phrase_type = reader.array("units/phrase/type")
    sets = {s.subtask: s.labels for s in VisualCoreferenceTask().label_sets(reader)}
    # type: the first type of the phrase, on gold pairs only
    assert np.array_equal(sets["type"] >= 0, corefer)
    assert np.array_equal(sets["type"][corefer], phrase_type[phrase][corefer])
    # identification: balanced per split, matched pairs are the coreferent ones
    views = dict(VisualCoreferenceTask(inputs=("attention",)).views(reader, None))
    split = views["identification/attention"].row_split
    ident = sets["identification"]
    assert np.all(corefer[ident == 1]) and not np.any(corefer[ident == 0])
    for s in (0, 1, 2):
        assert (ident[split == s] == 1).sum() == (ident[split == s] == 0).sum() > 0
    # every pair row has its phrase's example split: whole images per split
    example_ids = reader.array("examples/id").astype(str)
    image = np.array([int(e[3:].split(":")[0]) for e in example_ids])
    owner = reader.array("units/phrase/example")[phrase]
    expected = np.array([{"train": 0, "val": 1, "test": 2}[image_split(i)] for i in image[owner]])
    assert np.array_equal(split, expected)


def test_coref_multi_label_is_one_binary_probe_per_type(coref_cache: Path) -> None:
    reader = CacheReader(coref_cache)
    task = VisualCoreferenceTask(subtasks=("type",), multi_label=True)
    sets = task.label_sets(reader)
    assert [s.subtask for s in sets] == [
        f"type_{t}"
        for t in (
            "people",
            "clothing",
            "bodyparts",
            "animals",
            "vehicles",
            "instruments",
            "scene",
            "other",
        )
    ]
    phrase = reader.array("pairs/coref/phrase")
    corefer = reader.array("pairs/coref/corefer").astype(bool)
    types = reader.array("units/phrase/types")[phrase]
    stacked = np.stack([s.labels for s in sets], axis=1)
    assert np.array_equal(stacked[corefer], types[corefer].astype(np.int64))
    assert np.all(stacked[~corefer] == -1)
    assert (stacked[corefer].sum(1) >= 1).all() and (stacked[corefer].sum(1) == 2).any()


def test_balancing_is_deterministic_and_subsamples_the_larger_class() -> None:
    corefer = np.array([1, 0, 0, 0, 0, 1, 1, 1, 0, 1], bool)
    split = np.array([0, 0, 0, 0, 0, 0, 2, 2, 2, 2])
    a = balanced_identification(corefer, split, seed=3)
    assert np.array_equal(a, balanced_identification(corefer, split, seed=3))
    assert (a[:6] == 1).sum() == (a[:6] == 0).sum() == 2
    assert (a[6:] == 1).sum() == (a[6:] == 0).sum() == 1  # here the matched pairs are cut
    assert np.all(a[corefer] != 0) and np.all(a[~corefer] != 1)


def test_coref_planted_layer_and_head_win(compose_cfg, coref_cache: Path) -> None:
    cfg = compose_cfg(
        [
            "task=visual_coreference",
            f"data.cache={coref_cache}",
            "logger=csv",
            "trainer=cpu",
            "trainer.max_epochs=10",
        ]
    )
    run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = read_run_results(out / "results.json").rows
    assert {(r["subtask"], r["input"]) for r in rows} == {
        (s, i) for s in ("type", "identification") for i in ("embedding", "attention", "head")
    }
    layers = {r["probe"]: r["test_acc"] for r in rows if r["name"].startswith("type/embedding/")}
    assert max(layers, key=layers.get) == f"layer_{TYPE_LAYER:02d}"
    others = [v for k, v in layers.items() if k != f"layer_{TYPE_LAYER:02d}"]
    assert layers[f"layer_{TYPE_LAYER:02d}"] > 0.9 and max(others) < 0.5
    heads = sorted(
        (r for r in rows if r["name"].startswith("identification/head/")),
        key=lambda r: -r["val_acc"],
    )
    assert heads[0]["probe"] == "L02H02"
    assert (heads[0]["kind"], heads[0]["layer"], heads[0]["head"]) == ("head", 2, 2)
    assert {(r["family"], r["series"]) for r in rows if r["kind"] == "all_heads"} == {
        ("linear", "identification/attention"),
        ("linear", "type/attention"),
    }
    assert heads[0]["test_acc"] > 0.95 and heads[1]["test_acc"] < 0.75
    attention = next(r for r in rows if r["name"] == "identification/attention/all_heads")
    assert attention["test_acc"] > 0.9 and abs(attention["chance"] - 0.5) < 1e-9
    for name in ("type_by_layer", "type_heads", "identification_by_layer", "identification_heads"):
        assert (out / f"{name}.png").stat().st_size > 0


def test_control_types_are_phrase_words(tmp_path: Path) -> None:
    """Controls: a pair's type is its phrase's words (with the region category for pairs)."""
    import h5py

    from probes.tasks.visual_coreference import phrase_texts

    path = write_coref_cache(tmp_path / "c.h5", num_images=2)
    with h5py.File(path, "r+") as f:
        f["examples/text"][0] = "A b c d"
        f["examples/text"][1] = "a x C d"
    reader = CacheReader(path)
    words = phrase_texts(reader)
    assert words.tolist() == ["a", "b", "c d", "a", "x", "c d"]
    views = dict(VisualCoreferenceTask(inputs=("attention",)).views(reader, None))
    phrase = reader.array("pairs/coref/phrase")
    types = views["type/attention"].control_types
    same = words[phrase][:, None] == words[phrase][None, :]
    assert np.array_equal(types[:, None] == types[None, :], same)
