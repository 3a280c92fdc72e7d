"""VALUE task 1, multimodal fusion degree (Cao et al. 2020, Sec. "Multimodal fusion degree").

Per hidden layer, k-means (k = 2) clusters the token states and the normalised mutual
information between clusters and modality (text 0, image 1) says how far apart the modalities
stay: NMI near 1 = separate (little fusion), near 0 = fused. The paper does not say whether it
clustered each image-text pair or all tokens together, so both are reported.

Two-stream models (LXMERT, ``model_kind = "two-stream"``): the cache's hidden layers are the
cross-modality layers (``X00`` = their input, ``X01`` ...), where text and image tokens first
meet; the single-modality layers before them are not measured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datamodules.sources import contiguous_segments
from datamodules.views import layer_probe_ids
from probes.engine import ProbeEngine
from probes.loggers import log_finite
from probes.tasks.base import (
    SPLITS,
    TaskInputs,
    TaskOutput,
    cache_attr,
    examples_in_split,
)
from vlprobe.analysis.fusion import MIN_N_INIT, fusion_degree, select_examples
from vlprobe.cache.reader import CacheReader
from vlprobe.cache.schema import token_path
from vlprobe.reporting.figures import plot_by_layer
from vlprobe.reporting.identity import measure_fields

log = logging.getLogger(__name__)
FEW_SEEDS = (
    "task.kmeans_seeds={}: the k-means seed spread (nmi_*_seed_min/max) rests on fewer than 3 "
    "seeds; give task.kmeans_seeds=3 or more before quoting it"
)
COLUMNS = [
    "name",
    "layer_name",
    "nmi_per_example_mean",
    "nmi_per_example_std",
    "nmi_per_example_seed_min",
    "nmi_per_example_seed_max",
    "nmi_pooled",
    "nmi_pooled_seed_min",
    "nmi_pooled_seed_max",
    "n_examples",
    "n_pooled_tokens",
]


class TokenRows:
    """``(L, n, d)`` view of chosen token rows of ``tokens/hidden``, read one layer at a time.

    Only the chosen tokens are read (runs of nearby tokens as one slice each), so a layer of a
    subsample costs memory for the subsample, not for the whole cache.
    """

    def __init__(self, hidden: Any, tokens: np.ndarray, max_gap: int = 4096) -> None:
        self.hidden, self.tokens = hidden, np.asarray(tokens, dtype=np.int64)
        self.segments = contiguous_segments(self.tokens, max_gap)
        self.shape = (hidden.shape[0], len(self.tokens), hidden.shape[2])

    def __getitem__(self, layer: int) -> np.ndarray:
        parts = []
        for a, b in self.segments:
            lo, hi = int(self.tokens[a]), int(self.tokens[b - 1]) + 1
            parts.append(np.asarray(self.hidden[layer, lo:hi])[self.tokens[a:b] - lo])
        if not parts:
            return np.zeros(self.shape[1:], dtype=self.hidden.dtype)
        return np.concatenate(parts, axis=0)


@dataclass
class FusionDegreeTask:
    """NMI between 2-means clusters and modality, for every hidden layer (no training)."""

    mismatched_refusal: ClassVar[str | None] = None
    reads: ClassVar[tuple[str, ...]] = ("token_states",)  # the cache parts it reads
    modalities: ClassVar[tuple[str, ...]] = ("text", "image")  # the tokens it reads

    name: str = "fusion_degree"
    dataset: str = "flickr30k"
    split: str = "test"
    average_method: str = "arithmetic"
    max_examples: int | None = None
    max_pooled_tokens: int = 20_000
    n_init: int = MIN_N_INIT
    kmeans_seeds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"task.split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.average_method not in ("arithmetic", "geometric"):
            raise ValueError(
                f"task.average_method: arithmetic or geometric, not {self.average_method!r}"
            )
        if self.n_init < MIN_N_INIT or self.kmeans_seeds < 1:
            raise ValueError(
                f"task.n_init must be >= {MIN_N_INIT} and task.kmeans_seeds >= 1, got "
                f"{self.n_init} and {self.kmeans_seeds}"
            )

    def measure(self, reader: CacheReader) -> dict[str, Any]:
        """:func:`fusion_degree` over the chosen split's tokens."""
        chosen = examples_in_split(reader, self.split)
        off = reader.example("token_offset")
        if len(chosen) == 0:
            raise ValueError(f"the cache has no {self.split!r} examples; set task.split=all")
        # the seeded subset is drawn here, so only its tokens are ever read
        chosen = chosen[select_examples(len(chosen), self.max_examples, self.seed)]
        ranges = [np.arange(off[e], off[e + 1]) for e in chosen]
        tokens = np.concatenate(ranges)
        sub_off = np.concatenate([[0], np.cumsum([len(r) for r in ranges])])
        return fusion_degree(
            TokenRows(reader.file[token_path("hidden")], tokens),
            reader.token("modality")[tokens],
            sub_off,
            average_method=self.average_method,  # type: ignore[arg-type]
            seed=self.seed,
            max_examples=None,
            max_pooled_tokens=self.max_pooled_tokens,
            n_init=self.n_init,
            kmeans_seeds=self.kmeans_seeds,
        )

    def datasets(self) -> list[str]:
        return [self.dataset]

    def execute(self, inputs: TaskInputs, engine: ProbeEngine, out_dir: Path) -> TaskOutput:
        reader, loggers = inputs.reader, engine.loggers
        result = self.measure(reader)
        names = reader.layer_names
        rows = [
            {
                "task": self.name,
                "name": probe_id.name,
                **measure_fields(probe_id),
                "layer_name": names[i],
                "nmi_per_example_mean": float(result["per_example_mean"][i]),
                "nmi_per_example_std": float(result["per_example_std"][i]),
                **{
                    f"nmi_per_example_seed_{k}": float(result[f"per_example_seed_{k}"][i])
                    for k in ("std", "min", "max")
                },
                "nmi_pooled": float(result["pooled"][i]),
                **{
                    f"nmi_pooled_seed_{k}": float(result[f"pooled_seed_{k}"][i])
                    for k in ("std", "min", "max")
                },
                "kmeans_seeds": self.kmeans_seeds,
                "n_init": self.n_init,
                "n_examples": result["n_examples"],
                "n_skipped": result["n_skipped"],
                "n_pooled_tokens": result["n_pooled_tokens"],
                "average_method": self.average_method,
                "split": self.split,
            }
            for i, probe_id in enumerate(layer_probe_ids(list(range(len(names))), reader.stream))
        ]
        mean, std = result["per_example_mean"], result["per_example_std"]
        per_example = f"per example (mean; band ± std, bars: {self.kmeans_seeds} k-means seeds)"
        pooled = f"pooled tokens (band: {self.kmeans_seeds} k-means seeds)"
        figure = plot_by_layer(
            {per_example: mean, pooled: result["pooled"]},
            names,
            out_dir / "fusion_nmi_by_layer.png",
            title=f"fusion degree ({cache_attr(reader, 'model_name')}, {self.split}): "
            "NMI(k-means, modality)",
            ylabel="NMI",
            bands={
                per_example: (mean - std, mean + std),
                pooled: (result["pooled_seed_min"], result["pooled_seed_max"]),
            },
            errorbars={
                per_example: (result["per_example_seed_min"], result["per_example_seed_max"])
            },
        )
        log_finite(
            loggers,
            {
                **{f"fusion/nmi_pooled/{r['name']}": r["nmi_pooled"] for r in rows},
                **{f"fusion/nmi_per_example/{r['name']}": r["nmi_per_example_mean"] for r in rows},
            },
        )
        summary = {
            "fusion/nmi_pooled/first": rows[0]["nmi_pooled"],
            "fusion/nmi_pooled/last": rows[-1]["nmi_pooled"],
            "fusion/nmi_per_example/first": rows[0]["nmi_per_example_mean"],
            "fusion/nmi_per_example/last": rows[-1]["nmi_per_example_mean"],
            "fusion/most_fused_layer": _argmin_name(result["pooled"], names),
            "fusion/n_examples": result["n_examples"],
            "fusion/model_kind": cache_attr(reader, "model_kind"),
            "fusion/nmi_per_example/max_seed_range": _max_range(result),
        }
        if self.kmeans_seeds < 3:
            summary["fusion/kmeans_seeds_note"] = FEW_SEEDS.format(self.kmeans_seeds)
            log.warning(summary["fusion/kmeans_seeds_note"])
        return TaskOutput(rows, COLUMNS, {"nmi_by_layer": figure}, summary)


def _max_range(result: dict[str, Any]) -> float | None:
    """The largest move of the per-example mean NMI between k-means seeds, over layers."""
    width = result["per_example_seed_max"] - result["per_example_seed_min"]
    return float(np.nanmax(width)) if np.isfinite(width).any() else None


def _argmin_name(values: np.ndarray, names: list[str]) -> str | None:
    """Name of the layer with the lowest NMI (most fused); None if nothing was measured."""
    values = np.asarray(values, dtype=np.float64)
    return names[int(np.nanargmin(values))] if np.isfinite(values).any() else None
