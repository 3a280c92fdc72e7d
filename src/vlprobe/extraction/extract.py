"""What an extraction fixes before any model runs: example order, label ids, provenance.

The run itself is a Lightning predict stage (``extraction/predict.py``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from vlprobe.cache.records import LabelVocab
from vlprobe.cache.schema import SPLIT_IDS
from vlprobe.data.examples import VLExample
from vlprobe.models.base import Adapter


def build_label_vocab(examples: Sequence[VLExample]) -> LabelVocab:
    """Fix label ids before extraction: predicates by frequency, then name."""
    predicates = Counter(
        rel.predicate for ex in examples for rel in ex.relations if rel.predicate is not None
    )
    return LabelVocab(
        category=sorted({r.category for ex in examples for r in ex.regions}),
        predicate=[p for p, _ in sorted(predicates.items(), key=lambda kv: (-kv[1], kv[0]))],
        sentence=sorted({ex.label for ex in examples if ex.label is not None}),
    )


def content_hash(paths: Iterable[Path]) -> str:
    """sha256 over the bytes of every file under ``paths`` (sorted), for provenance."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.name).encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _provenance_attrs(provenance: dict[str, str]) -> dict[str, str]:
    """Adapter provenance under the cache's ``model_*`` attribute names."""
    renamed = {"config_sha256": "model_config_hash", "name_or_path": "model_path"}
    return {
        renamed.get(k, k if k.startswith("model_") else f"model_{k}"): v
        for k, v in provenance.items()
    }


def sort_for_cache(examples: Sequence[VLExample]) -> list[VLExample]:
    """Split, then group, then id: each split's units and pairs are contiguous in the cache."""
    return sorted(examples, key=lambda ex: (SPLIT_IDS[ex.split], ex.group_id, ex.example_id))


def cache_meta(adapter: Adapter, attrs: dict[str, object]) -> dict[str, object]:
    """The cache's file attributes: the model's shape and provenance, then ``attrs``."""
    return {
        "model_name": adapter.name,
        "model_kind": getattr(adapter, "model_kind", "single-stream"),
        "num_layers": adapter.num_layers,
        "num_heads": adapter.num_heads,
        "hidden_size": adapter.hidden_size,
        "layer_names": adapter.layer_names,
        **_provenance_attrs(adapter.provenance()),
        **attrs,
    }
