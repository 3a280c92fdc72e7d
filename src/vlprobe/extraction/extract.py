"""What an extraction fixes before any model runs: example order, label ids, provenance.

The run itself is a Lightning predict stage (``extraction/predict.py``).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from vlprobe.cache.records import LabelVocab
from vlprobe.cache.schema import SPLIT_IDS
from vlprobe.data.examples import VLExample
from vlprobe.extraction.fingerprint import data_files
from vlprobe.models.base import Adapter
from vlprobe.models.regions import num_regions

log = logging.getLogger(__name__)


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
        files += data_files(path)
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


def stream_attrs(adapter: Adapter, ordered: Sequence[VLExample]) -> dict[str, dict[str, object]]:
    """The streams of a multi-stream adapter to cache, each with its own shape attributes.

    A stream of image tokens only (LXMERT's vision stream) is left out of data without
    regions (SentEval), and refused for data where only some examples have regions.
    """
    with_regions = [num_regions(ex.inputs) > 0 for ex in ordered]
    out: dict[str, dict[str, object]] = {}
    for stream in adapter.streams:
        modalities = adapter.stream_modalities(stream)  # type: ignore[attr-defined]
        if "text" not in modalities and not all(with_regions):
            if not any(with_regions):
                log.info("the %s stream holds region tokens only: not cached (no regions)", stream)
                continue
            raise ValueError(
                f"the {stream} stream holds region tokens only, but {with_regions.count(False)} "
                f"examples have no regions: leave it out (model.stream=[...] without {stream})"
            )
        out[stream] = {
            "num_layers": adapter.stream_num_layers(stream),  # type: ignore[attr-defined]
            "layer_names": adapter.stream_layer_names(stream),  # type: ignore[attr-defined]
            "modalities": list(modalities),
        }
    if not out:
        raise ValueError(
            f"model.stream={','.join(adapter.streams)}: no stream to cache, the data has no "
            "regions; add a stream holding text (cross or language)"
        )
    return out
