"""Caches with a planted signal: the probes must find it (tests) and scale with it (bench/).

Written through :class:`CacheWriter`, so they are ordinary caches. Only hidden layer
``signal_layer`` linearly encodes a pair's relation label in its region embeddings, and only
attention head ``signal_head`` (layer, head) encodes it in the pair's attention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlprobe.cache.records import ExampleRecord, LabelVocab
from vlprobe.cache.writer import CacheWriter


def write_planted_relation_cache(
    path: str | Path,
    num_images: int = 200,
    regions_per_image: int = 8,
    pairs_per_image: int = 8,
    num_layers: int = 4,
    num_heads: int = 4,
    hidden_size: int = 32,
    signal_layer: int = 2,
    signal_head: tuple[int, int] = (1, 2),
    num_predicates: int = 3,
    seed: int = 0,
    strength: float = 3.0,
    num_categories: int = 5,
) -> Path:
    """A Visual-Genome-like cache; splits 80/10/10 by image. Returns the path."""
    if pairs_per_image > regions_per_image:
        raise ValueError("pairs_per_image must not exceed regions_per_image (distinct subjects)")
    rng = np.random.default_rng(seed)
    hidden_layers = num_layers + 1
    direction = rng.normal(size=(num_predicates + 1, hidden_size)).astype(np.float32)
    labels = LabelVocab(
        category=[f"thing{i}" for i in range(num_categories)],
        predicate=[f"pred{i}" for i in range(num_predicates)],
        sentence=[],
    )
    attrs = {
        "model_name": "planted",
        "model_kind": "single-stream",
        "model_revision": "synthetic",
        "model_config_hash": "none",
        "num_layers": num_layers,
        "num_heads": num_heads,
        "hidden_size": hidden_size,
        "layer_names": ["emb", *(f"L{i:02d}" for i in range(1, num_layers + 1))],
        "dataset_kind": "visual_genome",
        "dataset_path": "planted",
        "dataset_hash": f"seed{seed}",
        "extraction_settings": {"planted": True},
    }
    with CacheWriter(path, attrs, labels) as writer:
        for image in range(num_images):
            split = "train" if image % 10 < 8 else ("val" if image % 10 == 8 else "test")
            # distinct subjects: each subject embedding carries exactly one pair's label
            subj = rng.permutation(regions_per_image)[:pairs_per_image]
            obj = (subj + rng.integers(1, regions_per_image, pairs_per_image)) % regions_per_image
            # label 0..P-1 = predicate, P = unrelated (half of the pairs)
            related = rng.random(pairs_per_image) < 0.5
            predicate = np.where(related, rng.integers(0, num_predicates, pairs_per_image), -1)
            label = np.where(related, predicate, num_predicates)
            region = rng.normal(size=(hidden_layers, regions_per_image, hidden_size))
            # subject embedding carries the label at the signal layer (one pair per subject)
            for s, lab in zip(subj, label, strict=True):
                region[signal_layer, s] += strength * direction[lab]
            attention = rng.uniform(0, 0.2, size=(pairs_per_image, num_layers, num_heads, 2))
            layer, head = signal_head
            attention[:, layer - 1, head, 0] = np.where(related, 0.8, 0.05) + rng.normal(
                0, 0.05, pairs_per_image
            )
            tokens = 4 + regions_per_image
            writer.add(
                ExampleRecord.with_units(
                    example_id=f"img{image}",
                    group_id=f"img{image}",
                    split=split,
                    hidden=rng.normal(size=(hidden_layers, tokens, hidden_size)),
                    modality=np.array([0] * 4 + [1] * regions_per_image, np.int8),
                    word_index=np.array([-1, 0, 1, -1] + [-1] * regions_per_image, np.int32),
                    cls_mass=np.full((num_layers, num_heads, 2), 0.5),
                    region_emb=region,
                    region_category=rng.integers(0, num_categories, regions_per_image).astype(
                        np.int32
                    ),
                    region_box=np.zeros((regions_per_image, 4), np.float32),
                    rel_subject=subj.astype(np.int64),
                    rel_object=obj.astype(np.int64),
                    rel_related=related.astype(np.int8),
                    rel_predicate=predicate.astype(np.int32),
                    rel_attention=attention,
                )
            )
            if image % 64 == 63:
                writer.flush()
    return Path(path)
