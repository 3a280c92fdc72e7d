"""VALUE task 3c, cross-modal alignment read off single heads (Cao et al. 2020, Flickr30k
Entities visual coreference).

Every head is a zero-parameter classifier (after Clark et al. 2019): a phrase is resolved when
the region its tokens attend to most, among all the image's input regions
(``units/phrase/grounding``; ``candidates=mentioned``: among the regions its caption mentions,
``pairs/coref/attention[..., 0]``), is one of its gold (coreferent) regions; ties share the
credit. Accuracy per head gives a layer x head map; the paper reports about 15% of UNITER's
heads above 0.5 and a best head near 0.92. Beside it, each head's share of attention that
crosses modality (from the full maps kept for a few examples) shows which heads are
specialised for cross-modal interaction.

The best heads are chosen on ``select_split`` (validation) and scored on ``split`` (test): the
maximum over 48-144 heads of their test accuracy is biased upward (the demo's uniter-mini:
test-best 0.553, the head chosen on validation 0.535 on test). The test-best is reported
beside it, labelled as picked on test.

Two-stream models (LXMERT): phrase -> region attention is the language -> vision
cross-attention of each cross layer (``X01`` ...), so accuracy is meaningful; the cross-modal
share is not (each row is half self-, half cross-attention: 0.5 in every head by construction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datamodules.views import head_probe_ids
from probes.engine import ProbeEngine
from probes.loggers import log_finite
from probes.tasks.base import (
    SPLITS,
    TaskInputs,
    TaskOutput,
    attention_layer_names,
    cache_attr,
    examples_in_split,
)
from vlprobe.analysis.alignment import alignment_accuracy, cross_modal_share, top_heads
from vlprobe.analysis.stats import wilson_interval
from vlprobe.cache.reader import CacheError, CacheReader
from vlprobe.cache.schema import pair_path, unit_path
from vlprobe.reporting.figures import plot_by_layer, plot_layer_head_heatmap
from vlprobe.reporting.identity import measure_fields

COLUMNS = [
    "name",
    "layer_name",
    "alignment_acc",
    "alignment_acc_select",
    "cross_modal_share",
    "chance",
]
COLUMNS += ["n_phrases"]
CANDIDATES = ("all", "mentioned")  # every region of the image (the paper) / the caption's
NO_MAPS = (
    "no attention maps in the cache (extraction.max_attention_maps=0): cross_modal_share is NaN"
)


@dataclass
class CrossModalAlignmentTask:
    """Per-head phrase -> region alignment accuracy and cross-modal attention share."""

    mismatched_refusal: ClassVar[str | None] = (
        "a mismatched caption mentions nothing in the image, so no phrase has a gold region to "
        "align with"
    )
    reads: ClassVar[tuple[str, ...]] = ("phrase", "coref", "maps")  # the cache parts it reads
    modalities: ClassVar[tuple[str, ...]] = ("text", "image")  # the tokens it reads

    name: str = "cross_modal_alignment"
    dataset: str = "flickr30k"
    split: str = "test"
    top_k: int = 5
    threshold: float = 0.5
    max_maps: int | None = None
    candidates: str = "all"
    select_split: str = "val"

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"task.split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.select_split not in SPLITS:
            raise ValueError(
                f"task.select_split must be one of {', '.join(SPLITS)}, got {self.select_split!r}"
            )
        if self.candidates not in CANDIDATES:
            raise ValueError(
                f"task.candidates must be one of {', '.join(CANDIDATES)}, got {self.candidates!r}"
            )

    def accuracy(self, reader: CacheReader, split: str | None = None) -> dict[str, Any]:
        """``(A, H)`` accuracy over ``split``'s phrases (default ``self.split``) that have a
        gold region, and chance.

        ``candidates=all`` (the paper's question): the argmax runs over every input region of
        the image (computed at extraction in float32, ``units/phrase/grounding``).
        ``candidates=mentioned``: over the regions the caption mentions (``pairs/coref``).
        Chance is the mean over the scored phrases of ``#gold / #candidates``: the accuracy of
        a head that picks a candidate uniformly at random. Ties share the credit.
        """
        chosen = examples_in_split(reader, split or self.split)
        shape = (reader.num_layers, reader.num_heads)
        empty = {"acc": np.full(shape, np.nan), "chance": float("nan"), "n_phrases": 0}
        if unit_path("phrase", "example") not in reader.file or len(chosen) == 0:
            return empty
        phrases = np.flatnonzero(np.isin(reader.unit("phrase", "example"), chosen))
        if len(phrases) == 0:
            return empty
        if self.candidates == "all":
            return self._accuracy_all_regions(reader, phrases)
        return self._accuracy_mentioned(reader, phrases)

    def _accuracy_all_regions(self, reader: CacheReader, phrases: np.ndarray) -> dict[str, Any]:
        chance = reader.unit("phrase", "grounding_chance")[phrases].astype(np.float64)
        scored = chance > 0
        lo, hi = int(phrases[0]), int(phrases[-1]) + 1  # a split's phrases are contiguous
        credit = reader.file[unit_path("phrase", "grounding")][lo:hi][phrases - lo][scored]
        return {
            "acc": credit.mean(axis=0) if scored.any() else np.full(credit.shape[1:], np.nan),
            "chance": float(chance[scored].mean()) if scored.any() else np.nan,
            "n_phrases": int(scored.sum()),
            "n_phrases_unscored": int((~scored).sum()),
        }

    def _accuracy_mentioned(self, reader: CacheReader, phrases: np.ndarray) -> dict[str, Any]:
        off = reader.unit("phrase", "pair_offset").astype(np.int64)
        counts = off[phrases + 1] - off[phrases]
        rows = np.concatenate([np.arange(off[p], off[p + 1]) for p in phrases]).astype(np.int64)
        pair_phrase = reader.pair("coref", "phrase")
        if not np.array_equal(pair_phrase[rows], np.repeat(phrases, counts)):
            raise CacheError(f"{reader.path}: units/phrase/pair_offset disagrees with pairs/coref")
        if len(rows) == 0:
            shape = (reader.num_layers, reader.num_heads)
            return {"acc": np.full(shape, np.nan), "chance": float("nan"), "n_phrases": 0}
        gold = reader.pair("coref", "corefer")[rows] == 1
        lo, hi = int(rows[0]), int(rows[-1]) + 1  # a split's pairs are contiguous
        attention = reader.file[pair_path("coref", "attention")][lo:hi, :, :, 0][rows - lo]
        sub_off = np.concatenate([[0], np.cumsum(counts)])
        owner = np.repeat(np.arange(len(phrases)), counts)
        n_gold = np.bincount(owner, weights=gold, minlength=len(phrases))
        scored = (counts > 0) & (n_gold > 0)
        return {
            "acc": alignment_accuracy(sub_off, attention, gold),
            "chance": float(np.mean(n_gold[scored] / counts[scored])) if scored.any() else np.nan,
            "n_phrases": int(scored.sum()),
            "n_phrases_unscored": int((~scored).sum()),
        }

    def cross_share(self, reader: CacheReader) -> tuple[np.ndarray, int]:
        """``(A, H)`` cross-modal share over the stored full maps, and their count.

        The extractor keeps maps for the first ``extraction.max_attention_maps`` test-split
        examples only, so this ignores ``split``: it is a small-sample view of held-out data.
        """
        shape = (reader.num_layers, reader.num_heads)
        if "attention/maps" not in reader.file:
            return np.full(shape, np.nan), 0
        group = reader.file["attention/maps"]
        examples = sorted(int(k) for k in group)[: self.max_maps]
        off = reader.example("token_offset")
        modality = reader.token("modality")
        maps = [group[str(e)][()] for e in examples]
        mods = [modality[off[e] : off[e + 1]] for e in examples]
        if not maps:
            return np.full(shape, np.nan), 0
        return cross_modal_share(maps, mods), len(maps)

    def datasets(self) -> list[str]:
        return [self.dataset]

    def execute(self, inputs: TaskInputs, engine: ProbeEngine, out_dir: Path) -> TaskOutput:
        reader, loggers = inputs.reader, engine.loggers
        result = self.accuracy(reader)
        acc, chance = result["acc"], result["chance"]
        select = self.accuracy(reader, self.select_split)["acc"]
        share, n_maps = self.cross_share(reader)
        num_layers, num_heads = acc.shape
        layer_names = attention_layer_names(reader)
        low, high = wilson_interval(acc, result["n_phrases"])
        rows = []
        for probe_id in head_probe_ids(num_layers, num_heads, reader.stream):
            a, h = probe_id.layer - 1, probe_id.head - 1  # type: ignore[operator]
            rows.append(
                {
                    "task": self.name,
                    "name": probe_id.name,
                    **measure_fields(probe_id),
                    "layer_name": layer_names[a],
                    "alignment_acc": float(acc[a, h]),
                    "alignment_acc_low": float(low[a, h]),
                    "alignment_acc_high": float(high[a, h]),
                    "alignment_acc_select": float(select[a, h]),
                    "select_split": self.select_split,
                    "cross_modal_share": float(share[a, h]),
                    "chance": chance,
                    "candidates": self.candidates,
                    "n_phrases": result["n_phrases"],
                    "n_maps": n_maps,
                    "split": self.split,
                }
            )
        best = [(a, h, float(acc[a, h])) for a, h, _ in top_heads(select, self.top_k)]
        top = [f"{rows[a * num_heads + h]['name']}={v:.3f}" for a, h, v in best]
        console = [rows[a * num_heads + h] for a, h, _ in best] or rows[: self.top_k]
        test_best = top_heads(acc, 1)
        log_finite(loggers, {"alignment/chance": chance})  # per-head values: the rows' tables
        summary: dict[str, Any] = {
            # chosen on select_split, scored on split
            "alignment/best_acc": best[0][2] if best else None,
            "alignment/best_head": top[0].split("=")[0] if top else None,
            "alignment/best_head_select_acc": float(select[best[0][:2]]) if best else None,
            "alignment/selected_on": self.select_split,
            "alignment/top_heads": top,
            # picked on split itself: optimistic, shown beside it only
            "alignment/test_best_head": (
                rows[test_best[0][0] * num_heads + test_best[0][1]]["name"] if test_best else None
            ),
            "alignment/test_best_acc": test_best[0][2] if test_best else None,
            "alignment/chance": chance,
            "alignment/candidates": self.candidates,
            f"alignment/frac_heads_above_{self.threshold:g}": float(np.mean(acc > self.threshold)),
            "alignment/n_phrases": result["n_phrases"],
            "alignment/cross_share/mean": float(np.nanmean(share)) if n_maps else None,
            "alignment/cross_share/n_maps": n_maps,
            "alignment/model_kind": cache_attr(reader, "model_kind"),
        }
        if result["n_phrases"] == 0:
            summary["alignment/note"] = "no phrase with a gold region: accuracy is NaN"
        if not best:
            summary["alignment/select_note"] = (
                f"no {self.select_split} phrase with a gold region: no best head chosen (the "
                f"test-best is picked on {self.split}); set task.select_split to a split that has"
                " phrases"
            )
        elif self.select_split in (self.split, "all") or self.split == "all":
            summary["alignment/select_note"] = (
                f"best heads chosen on {self.select_split} and scored on {self.split}: the splits"
                " overlap, so best_acc is optimistic"
            )
        if not np.isfinite(share).any():
            summary["alignment/cross_share/note"] = NO_MAPS
        elif summary["alignment/model_kind"] == "two-stream":
            summary["alignment/cross_share/note"] = "two-stream: 0.5 in every head by construction"
        figures = self.figures(acc, select, share, chance, layer_names, reader, out_dir)
        return TaskOutput(rows, COLUMNS, figures, summary, console_rows=console)

    def figures(
        self,
        acc: np.ndarray,
        select: np.ndarray,
        share: np.ndarray,
        chance: float,
        layer_names: list[str],
        reader: CacheReader,
        out_dir: Path,
    ) -> dict[str, Path]:
        model = cache_attr(reader, "model_name")
        figures = {
            "accuracy_heads": plot_layer_head_heatmap(
                acc,
                out_dir / "alignment_accuracy_heads.png",
                title=f"phrase -> gold region, per head ({model}); chance {chance:.2f}",
                layer_names=layer_names,
                vmin=0.0,
                vmax=1.0,
                annotate_top=self.top_k,
            )
        }
        if np.isfinite(acc).any():
            series = {f"head chosen on {self.select_split}": chosen_by_layer(acc, select)}
            series[f"best head on {self.split} (picked on it: optimistic)"] = np.nanmax(acc, 1)
            series["mean over heads"] = np.nanmean(acc, axis=1)
            figures["accuracy_by_layer"] = plot_by_layer(
                series,
                layer_names,
                out_dir / "alignment_accuracy_by_layer.png",
                title=f"phrase -> region alignment accuracy by layer ({model})",
                chance=chance if np.isfinite(chance) else None,
            )
        if np.isfinite(share).any():
            figures["cross_share_heads"] = plot_layer_head_heatmap(
                share,
                out_dir / "alignment_cross_share_heads.png",
                title=f"share of attention crossing modality ({model})",
                layer_names=layer_names,
                cbar_label="cross-modal share",
                vmin=0.0,
                vmax=1.0,
                annotate_top=self.top_k,
            )
        return figures


def chosen_by_layer(acc: np.ndarray, select: np.ndarray) -> np.ndarray:
    """``(A,)``: per layer, the ``acc`` of the head with the best ``select`` accuracy (NaN for a
    layer with no finite ``select``)."""
    out = np.full(acc.shape[0], np.nan)
    for layer, row in enumerate(select):
        if np.isfinite(row).any():
            out[layer] = acc[layer, int(np.nanargmax(row))]
    return out
