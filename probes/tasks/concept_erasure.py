"""Is the knowledge used? Amnesic probing (Elazar et al. 2021) with LEACE (Belrose et al. 2023).

The run's model is probed three ways, each from its own cache: plain, with the concept erased
by LEACE at hidden layer ``layer`` (the layers above compute on the erased states), and with
a random subspace of the same rank erased there instead (``draws`` of them, the control).
Per layer it reports the concept's own linear probe (at ``layer`` LEACE leaves it at the
majority baseline; above it, does the concept come back?) and each measure (other VALUE tasks,
run unchanged on each cache), with the change LEACE - random and its 95% interval over the
random draws. Only a change beyond the random control says the model *used* what was erased.
For a model with its pre-training heads (uniter-mini) also the change in its own objectives
(masked-phrase MLM, ITM) on held-out captions, each eraser hooked at ``layer``.

LXMERT (a multi-stream cache): the study runs on the stream holding text and image (cross);
the concept's probe reads the stream it was erased in (vision for region concepts, language for
word concepts; ``layer`` is numbered there), the measures the cross-modality layers, which all
compute on the erased states (none of them is the erased layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datamodules.sources import LayerRows
from datamodules.views import UnitEmbeddingView, layer_probe_ids
from probes.engine import ProbeEngine
from probes.tasks.base import TaskInputs, TaskOutput, select_layers
from probes.tasks.cross_modal_alignment import CrossModalAlignmentTask
from probes.tasks.pair_probing import check_choices
from probes.tasks.visual_relation import VisualRelationTask
from vlprobe.analysis.stats import mean_std_ci
from vlprobe.cache.reader import CacheReader
from vlprobe.intervention.concepts import Concept, concept
from vlprobe.intervention.objectives import OBJECTIVES, HeldOut, evaluate_erased, load_held_out
from vlprobe.intervention.settings import STREAM_OF_TOKENS, cache_eraser
from vlprobe.models.hf_adapter import RANDOM_INIT
from vlprobe.pretrain.uniter_mini import RECORD
from vlprobe.reporting.figures import plot_by_layer

MEASURES = ("visual_relation", "cross_modal_alignment")
COLUMNS = [
    "name", "plain", "leace", "random", "random_ci95", "leace_minus_random", "change_low",
    "change_high", "chance",
]  # fmt: skip


def _measure_task(measure: str) -> Any:
    """The VALUE task a measure runs (relations: the per-layer embedding probes only)."""
    if measure == "visual_relation":
        return VisualRelationTask(inputs=("embedding",))
    return CrossModalAlignmentTask()


@dataclass
class ConceptErasureTask:
    mismatched_refusal: ClassVar[str | None] = (
        "erasure is measured on the real image-caption pairs (alignment needs gold regions)"
    )
    modalities: ClassVar[tuple[str, ...]] = ("text", "image")
    name: str = "concept_erasure"
    concept: str = "region_class"
    layer: int = 3
    measure: tuple[str, ...] = MEASURES
    draws: int = 3
    top_k: int = 10
    # senteval_label: the SentEval task whose sentences carry the concept
    senteval_task: str = "past_present"
    # held-out captions for the objectives of a model with its pre-training heads (uniter-mini)
    objective_captions: int = 300
    what: Concept = field(init=False, repr=False)  # the concept, on its data set

    def __post_init__(self) -> None:
        self.what = concept(self.concept, self.senteval_task)  # one line for an unknown one
        check_choices("task.measure", tuple(self.measure), MEASURES)
        if self.draws < 2:
            raise ValueError(
                f"task.draws={self.draws}: the random control needs at least 2 draws for an "
                "interval"
            )
        if self.objective_captions < 1:
            raise ValueError(
                f"task.objective_captions={self.objective_captions}: give at least 1 held-out "
                "caption"
            )

    @property
    def reads(self) -> tuple[str, ...]:
        """What the concept probe and every measure read (extraction writes these for every
        cache): region_class with both measures, ``region, relation, phrase, coref, maps``."""
        parts = [*self.what.reads, *(p for m in self.measure for p in _measure_task(m).reads)]
        return tuple(dict.fromkeys(parts))

    def datasets(self) -> list[str]:
        kinds = [self.what.dataset]
        kinds += [_measure_task(m).dataset for m in self.measure]
        return list(dict.fromkeys(kinds))

    def interventions(self) -> dict[str, dict[str, Any]]:
        """role -> intervention settings: LEACE, then each random draw (prepare builds them)."""
        common = {"layer": self.layer, "concept": self.concept, "top_k": self.top_k}
        if self.what.dataset.startswith("senteval/"):
            common["senteval_task"] = self.senteval_task
        out = {"leace": {"kind": "leace", **common}}
        for draw in range(self.draws):
            out[f"random_{draw}"] = {"kind": "random", **common, "draw": draw, "rank": None}
        return out

    # ------------------------------------------------------------------ per cache
    def concept_rows(
        self, reader: CacheReader, engine: ProbeEngine, role: str
    ) -> list[dict[str, Any]]:
        """The concept's linear (or configured) probe on its units' embeddings, every layer."""
        what = self.what
        labels, names = what.labels(reader, self.top_k)
        layers = select_layers(reader, engine.probing.layers)
        ids = layer_probe_ids(layers, reader.stream)
        view = UnitEmbeddingView(
            reader=reader,
            labels=labels,
            probe_names=[p.name for p in ids],
            probe_ids=ids,
            class_names=names,
            row_split=what.unit_split(reader),
            left=LayerRows(reader, what.features, layers),
            left_index=np.arange(labels.size),
        )
        rows = engine.train_view(view, f"{role}/{self.concept}")
        return [
            {**r, "measure": self.concept, "layer": layer, "value": r["test_acc"]}
            for r, layer in zip(rows, layers, strict=True)
        ]

    def measure_rows(
        self, measure: str, readers: dict[str, CacheReader], engine: ProbeEngine, out_dir: Path
    ) -> list[dict[str, Any]]:
        """One value per (measure, layer): relation probes' test accuracy per subtask; the
        best head's alignment accuracy per attention layer."""
        task = _measure_task(measure)
        out = task.execute(
            TaskInputs({"model": {task.dataset: readers[task.dataset]}}), engine, out_dir
        )
        rows = []
        if measure == "visual_relation":
            for r in out.rows:
                layer = int(r["probe"].rsplit("_", 1)[1])
                rows.append(
                    {
                        **r,
                        "measure": f"relation_{r['subtask']}",
                        "layer": layer,
                        "value": r["test_acc"],
                    }
                )
            return rows
        for layer in sorted({r["layer"] for r in out.rows}):
            heads = [r for r in out.rows if r["layer"] == layer]
            best = max(heads, key=lambda r: r["alignment_acc"])
            rows.append(
                {
                    "name": f"alignment_best_head/{best['name']}",
                    "measure": "alignment_best_head",
                    "layer": layer,
                    "hidden_layer": layer - 1,  # attention layer l reads hidden layer l - 1
                    "value": best["alignment_acc"],
                    "chance": best["chance"],
                    "n_test": best["n_phrases"],
                }
            )
        return rows

    def objective_rows(self, held: HeldOut, reader: CacheReader, role: str) -> list[dict[str, Any]]:
        """The model's own objectives on held-out captions with the eraser ``reader``'s cache
        was extracted with hooked at its layer (the plain cache: none)."""
        found = evaluate_erased(held, cache_eraser(reader), self.layer, self.objective_captions)
        if not found["captions"]:  # fewer than two held-out images: nothing was evaluated
            return []
        tokens, captions = found["mlm_tokens"], found["captions"]
        n = {"mlm_true_image": tokens, "mlm_other_image": tokens, "itm_ranking": captions}
        return [
            {
                "name": f"{role}/objective/{key}",
                "measure": f"objective_{key}",
                "layer": self.layer,
                "hidden_layer": None,  # the model's output, computed on states erased at layer
                "value": found[key],
                "n_test": n.get(key, 2 * captions),  # itm_acc: both pairs of each caption
            }
            for key in OBJECTIVES
        ]

    # ------------------------------------------------------------------ the study
    def execute(self, inputs: TaskInputs, engine: ProbeEngine, out_dir: Path) -> TaskOutput:
        roles = ["model", "leace", *(f"random_{d}" for d in range(self.draws))]
        dataset = self.what.dataset
        streams = SequenceReaders(inputs, self.what.tokens)
        # the heads' evaluation feeds regions, not the extraction's words: region concepts only
        regions = self.what.tokens == "regions"
        held = pretrained_heads(inputs.readers["model"][dataset]) if regions else None
        rows: list[dict[str, Any]] = []
        try:
            for role in roles:
                rows += self._role_rows(role, streams, engine, held, out_dir)
        finally:
            streams.close()
        comparisons = compare(rows, self.layer)
        erased_names = streams.erased_layer_names(dataset)
        names = {self.concept: erased_names}
        by_layer = [c["measure"] for c in comparisons if not c["measure"].startswith("objective_")]
        figures = {
            f"erasure_{m}": plot_erasure(
                comparisons,
                m,
                names.get(m, streams.layer_names(dataset)),
                erased_names[self.layer],
                out_dir,
                inputs.labels["model"],
            )
            for m in dict.fromkeys(by_layer)
        }
        at = [c for c in comparisons if c["measure"] == self.concept and c["layer"] == self.layer]
        summary: dict[str, Any] = {"erasure/layer": self.layer, "erasure/concept": self.concept}
        if at:
            summary |= {
                f"erasure/{self.concept}_at_layer/{k}": at[0][k]
                for k in ("plain", "leace", "random", "chance")
            }
        for c in comparisons:
            summary[f"erasure/change/{c['measure']}/layer_{c['layer']:02d}"] = c[
                "leace_minus_random"
            ]
        return TaskOutput(rows + comparisons, COLUMNS, figures, summary, console_rows=comparisons)

    def _role_rows(
        self,
        role: str,
        streams: SequenceReaders,
        engine: ProbeEngine,
        held: HeldOut | None,
        out_dir: Path,
    ) -> list[dict[str, Any]]:
        """Every row of one cache (role): the concept probe, the measures, the objectives."""
        dataset = self.what.dataset
        kind = "plain" if role == "model" else role.split("_")[0]
        found = self.concept_rows(streams.erased(role, dataset), engine, role)
        if streams.erased_stream is not None:
            found = [{**r, "stream": streams.erased_stream} for r in found]
        readers = streams.run(role)
        for measure in self.measure:
            measured = self.measure_rows(measure, readers, engine, out_dir / role / measure)
            if streams.erased_stream is not None:  # no layer of the run's stream is the erased one
                measured = [{**r, "hidden_layer": None} for r in measured]
            found += measured
        if held is not None:
            found += self.objective_rows(held, streams.run(role)[dataset], role)
        draw = int(role.split("_")[1]) if kind == "random" else None
        out = []
        for r in found:
            name = r["name"] if r["name"].startswith(role) else f"{role}/{r['name']}"
            out.append({**r, "name": name, "intervention": kind, "draw": draw})
        return out


class SequenceReaders:
    """Each role's caches read as the sequence the study runs on (a multi-stream cache: the
    run's stream, e.g. LXMERT's cross) and as the stream the concept was erased in (LXMERT:
    vision for regions, language for words; one-sequence caches: the cache itself)."""

    def __init__(self, inputs: TaskInputs, tokens: str) -> None:
        self.inputs = inputs
        first = next(iter(inputs.readers["model"].values()))
        self.stream: str | None = first.stream  # the run's stream (None: one sequence)
        model_class = str(first.attr("model_class")) if self.stream else ""
        self.erased_stream = STREAM_OF_TOKENS[model_class][tokens] if self.stream else None
        self._opened: list[CacheReader] = []

    def _at(self, reader: CacheReader, stream: str | None) -> CacheReader:
        if stream is None or reader.stream == stream:
            return reader
        opened = CacheReader(reader.path, stream)
        self._opened.append(opened)
        return opened

    def run(self, role: str) -> dict[str, CacheReader]:
        """``role``'s caches by data set, at the run's stream."""
        return {d: self._at(r, self.stream) for d, r in self.inputs.readers[role].items()}

    def erased(self, role: str, dataset: str) -> CacheReader:
        """``role``'s cache of ``dataset`` at the stream the concept was erased in."""
        return self._at(self.inputs.readers[role][dataset], self.erased_stream)

    def layer_names(self, dataset: str) -> list[str]:
        return self.run("model")[dataset].layer_names

    def erased_layer_names(self, dataset: str) -> list[str]:
        return self.erased("model", dataset).layer_names

    def close(self) -> None:
        for reader in self._opened:
            reader.close()


def pretrained_heads(reader: CacheReader) -> HeldOut | None:
    """uniter-mini's heads and held-out captions when ``reader`` is a cache of the pre-trained
    uniter-mini (its folder holds ``pretrain.json``); None for every other model."""
    if str(reader.attr("model_name")) != "uniter-mini":
        return None
    if str(reader.attr("model_revision")) == RANDOM_INIT:
        return None  # random weights: no heads were trained
    folder = Path(str(reader.attr("model_path"))).parent
    return load_held_out(folder) if (folder / RECORD).is_file() else None


def compare(rows: list[dict[str, Any]], layer: int) -> list[dict[str, Any]]:
    """Per (measure, layer): plain, LEACE, random mean (95% CI over draws) and LEACE - random
    with its 95% interval over the draws (each draw's difference). The row that reads the
    erased hidden layer ``layer`` is marked (alignment: attention layer ``layer + 1``)."""
    out = []
    keys = dict.fromkeys((r["measure"], r["layer"]) for r in rows)
    for measure, at in keys:
        mine = [r for r in rows if (r["measure"], r["layer"]) == (measure, at)]
        value = {r["intervention"]: r["value"] for r in mine if r["intervention"] != "random"}
        randoms = np.array([r["value"] for r in mine if r["intervention"] == "random"], float)
        mean, _, half = mean_std_ci(randoms)
        change, _, change_half = mean_std_ci(value["leace"] - randoms)
        on_erased = mine[0].get("hidden_layer", at) == layer
        out.append(
            {
                "name": f"{measure}/layer_{at:02d}" + (" (on erased layer)" if on_erased else ""),
                "measure": measure,
                "layer": at,
                "plain": value["plain"],
                "leace": value["leace"],
                "random": float(mean),
                "random_ci95": float(half),
                "random_per_draw": randoms.tolist(),
                "leace_minus_random": float(change),
                "change_low": float(change - change_half),
                "change_high": float(change + change_half),
                "chance": mine[0].get("chance"),
                "n_test": mine[0].get("n_test"),
                # a multi-stream cache: the stream the measure read (else the run's)
                **({"stream": mine[0]["stream"]} if mine[0].get("stream") else {}),
            }
        )
    return out


def plot_erasure(
    comparisons: list[dict[str, Any]],
    measure: str,
    layer_names: list[str],
    erased_at: str,
    out_dir: Path,
    model: str,
) -> Path:
    """``measure`` by layer, one line per intervention (random: mean, 95% CI over draws)."""
    mine = {c["layer"]: c for c in comparisons if c["measure"] == measure}
    xs = range(len(layer_names))
    series = {
        kind: [mine[i][kind] if i in mine else np.nan for i in xs]
        for kind in ("plain", "leace", "random")
    }
    half = [mine[i]["random_ci95"] if i in mine else np.nan for i in xs]
    low = [m - h for m, h in zip(series["random"], half, strict=True)]
    high = [m + h for m, h in zip(series["random"], half, strict=True)]
    chances = [c["chance"] for c in mine.values() if isinstance(c.get("chance"), float)]
    return plot_by_layer(
        {
            "plain": series["plain"],
            "LEACE": series["leace"],
            "random (same rank)": series["random"],
        },
        layer_names,
        out_dir / f"erasure_{measure}.png",
        title=f"{measure}: {model}, erased at {erased_at}",
        chance=float(np.mean(chances)) if chances else None,
        errorbars={"random (same rank)": (low, high)},
    )
