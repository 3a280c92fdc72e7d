"""VALUE task 2, modality importance (Cao et al. 2020, Sec. "Modality importance").

For layer a and head h, ``I(M, a, h) = sum_{i in M} attn([CLS] -> i)`` averaged over examples,
for M = text and M = image, read from ``attention/cls_mass``. Raw mass favours the modality with
more tokens (36-100 regions vs 10-20 words), so the per-token normalised share is reported
beside it. In the paper's definition [CLS] itself and [SEP] count as text; much of [CLS]'s
attention parks on those two, so the share over content tokens only (words vs regions) is
reported side by side (``content_*``). The paper's finding: [CLS] attends to text more than to
the image, most of all in the middle layers.

Two-stream models (LXMERT) are refused: the adapter writes each cross layer as one
``[text; image]`` map whose rows are half self-attention and half cross-attention, so [CLS]
puts exactly 0.5 on each modality in every head by construction and the per-token share is
fixed by the token counts: the measure says nothing about the model there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datamodules.views import head_probe_ids
from probes.engine import ProbeEngine
from probes.tasks.base import (
    SPLITS,
    TaskInputs,
    TaskOutput,
    attention_layer_names,
    cache_attr,
    examples_in_split,
)
from vlprobe.analysis.modality import modality_importance
from vlprobe.cache.reader import CacheReader
from vlprobe.reporting.figures import plot_by_layer, plot_layer_head_heatmap, plot_text_vs_image
from vlprobe.reporting.identity import measure_fields

MEASURES = (
    "text",
    "image",
    "text_share",
    "text_per_token",
    "image_per_token",
    "text_share_normalised",
    "content_text",
    "content_text_share",
    "content_text_per_token",
    "content_text_share_normalised",
)
TWO_STREAM_REFUSAL = (
    "task=modality_importance is not defined for a two-stream model ({model}): each cross "
    "layer's [CLS] row is half self- and half cross-attention, so the text share is 0.5 by "
    "construction and the per-token share only reflects token counts; use a single-stream "
    "model (model=visualbert_minilm, visualbert, vilt)"
)
COLUMNS = [
    "name",
    "text_share",
    "content_text_share",
    "text_share_normalised",
    "content_text_share_normalised",
    "n_examples",
]


@dataclass
class ModalityImportanceTask:
    """[CLS] attention mass on text vs image tokens, per head (no training)."""

    mismatched_refusal: ClassVar[str | None] = None
    reads: ClassVar[tuple[str, ...]] = ()  # the cache parts it reads
    modalities: ClassVar[tuple[str, ...]] = ("text", "image")  # the tokens it reads

    name: str = "modality_importance"
    dataset: str = "flickr30k"
    split: str = "test"

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"task.split must be one of {', '.join(SPLITS)}, got {self.split!r}")

    def measure(self, reader: CacheReader) -> tuple[dict[str, np.ndarray], int]:
        """``(A, H)`` arrays of :func:`modality_importance` over the split, and its size."""
        if cache_attr(reader, "model_kind") == "two-stream":
            raise ValueError(TWO_STREAM_REFUSAL.format(model=cache_attr(reader, "model_name")))
        chosen = examples_in_split(reader, self.split)
        if len(chosen) == 0:
            raise ValueError(f"the cache has no {self.split!r} examples; set task.split=all")
        lo, hi = int(chosen[0]), int(chosen[-1]) + 1  # a split is a contiguous block of rows
        mass = reader.file["attention/cls_mass"][lo:hi][chosen - lo]
        special = reader.file["attention/cls_special_mass"][lo:hi][chosen - lo]
        n_text = reader.example("n_text")[chosen]
        n_image = reader.example("n_image")[chosen]
        off = reader.example("token_offset")
        is_special = (reader.token("modality") == 0) & (reader.token("word_index") < 0)
        n_special = np.add.reduceat(is_special, off[:-1])[chosen]
        result = modality_importance(mass, n_text, n_image, special, n_special)
        return result, len(chosen)

    def datasets(self) -> list[str]:
        return [self.dataset]

    def execute(self, inputs: TaskInputs, engine: ProbeEngine, out_dir: Path) -> TaskOutput:
        reader = inputs.reader
        result, n_examples = self.measure(reader)
        num_layers, num_heads = result["text"].shape
        layer_names = attention_layer_names(reader)
        rows = []
        for probe_id in head_probe_ids(num_layers, num_heads, reader.stream):
            a, h = probe_id.layer - 1, probe_id.head - 1  # type: ignore[operator]
            row: dict[str, Any] = {"task": self.name, "name": probe_id.name}
            row.update(measure_fields(probe_id))
            row["layer_name"] = layer_names[a]
            row.update({m: float(result[m][a, h]) for m in MEASURES})
            row.update({"n_examples": n_examples, "split": self.split})
            rows.append(row)

        by_layer = {m: np.nanmean(result[m], axis=1) for m in MEASURES}
        console = [
            {"name": f"{layer_names[a]} (mean of {num_heads} heads)", "n_examples": n_examples}
            | {m: float(by_layer[m][a]) for m in MEASURES}
            for a in range(num_layers)
        ]
        figures = self.figures(result, by_layer, layer_names, reader, out_dir)
        share, share_norm = result["text_share"], result["text_share_normalised"]
        content = result["content_text_share"]
        content_norm = result["content_text_share_normalised"]
        summary = {
            "modality/text_share/mean": float(np.nanmean(share)),
            "modality/text_share_normalised/mean": float(np.nanmean(share_norm)),
            "modality/content_text_share/mean": float(np.nanmean(content)),
            "modality/content_text_share_normalised/mean": float(np.nanmean(content_norm)),
            "modality/heads_text_dominant": float(np.mean(share > 0.5)),
            "modality/heads_text_dominant_normalised": float(np.mean(share_norm > 0.5)),
            "modality/heads_text_dominant_content": float(np.mean(content > 0.5)),
            "modality/max_text_share_layer": layer_names[int(np.nanargmax(by_layer["text_share"]))]
            if np.isfinite(by_layer["text_share"]).any()
            else None,
            "modality/n_examples": n_examples,
            "modality/model_kind": cache_attr(reader, "model_kind"),
        }
        return TaskOutput(rows, COLUMNS, figures, summary, console_rows=console)

    def figures(
        self,
        result: dict[str, np.ndarray],
        by_layer: dict[str, np.ndarray],
        layer_names: list[str],
        reader: CacheReader,
        out_dir: Path,
    ) -> dict[str, Path]:
        model = cache_attr(reader, "model_name")
        common = {"layer_names": layer_names, "vmin": 0.0, "vmax": 1.0}
        return {
            "text_share_heads": plot_layer_head_heatmap(
                result["text_share"],
                out_dir / "modality_text_share_heads.png",
                title=f"[CLS] attention share on text ({model})",
                cbar_label="text share (raw mass)",
                **common,
            ),
            "text_share_normalised_heads": plot_layer_head_heatmap(
                result["text_share_normalised"],
                out_dir / "modality_text_share_normalised_heads.png",
                title=f"[CLS] attention share on text, per token ({model})",
                cbar_label="text share (per-token normalised)",
                **common,
            ),
            "content_text_share_heads": plot_layer_head_heatmap(
                result["content_text_share"],
                out_dir / "modality_content_text_share_heads.png",
                title=f"[CLS] attention share on words (no [CLS]/[SEP]) ({model})",
                cbar_label="text share (content tokens)",
                **common,
            ),
            "text_share_by_layer": plot_by_layer(
                {
                    "text share (paper: with [CLS]/[SEP])": by_layer["text_share"],
                    "text share (content tokens only)": by_layer["content_text_share"],
                    "per token (paper)": by_layer["text_share_normalised"],
                    "per token (content only)": by_layer["content_text_share_normalised"],
                },
                layer_names,
                out_dir / "modality_text_share_by_layer.png",
                title=f"[CLS] text share by layer, mean over heads ({model})",
                ylabel="text share",
            ),
            "text_vs_image_by_layer": plot_text_vs_image(
                by_layer["text"],
                by_layer["image"],
                layer_names,
                out_dir / "modality_text_vs_image_by_layer.png",
                title=f"[CLS] attention on text vs image, mean over heads ({model})",
            ),
        }
