"""Turn reader output and region features into task examples (:class:`VLExample`).

Splits are always by image (Flickr30k: the official lists; Visual Genome: a stable hash of the
image id) or by sentence text (SentEval), never by phrase or pair, so nothing leaks.
Whatever a builder drops (notvisual phrases, untied gold boxes, self-relations, ...) is counted
in a :class:`BuildStats` (pass ``stats=`` to read it) and logged; bad records go through the
usual ``strict`` / :class:`ProblemLog` path.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlprobe.data.alignment import TieMode, tie_gold_boxes
from vlprobe.data.errors import DataFormatError, ProblemLog, skip_or_raise
from vlprobe.data.examples import PhraseSpan, Region, RelationPair, VLExample
from vlprobe.data.flickr30k import Flickr30kEntities
from vlprobe.data.senteval import read_senteval
from vlprobe.data.types import SPLITS, Box, Caption, RegionFeatures
from vlprobe.data.visual_genome import load_visual_genome
from vlprobe.models.base import ModelInput

PathLike = str | os.PathLike[str]
logger = logging.getLogger(__name__)

UNKNOWN_CATEGORY = "unknown"
"""Region category of a Flickr30k chain no caption of its own image mentions (mismatched)."""


@dataclass
class BuildStats:
    """Counts of what a builder kept and dropped, by reason.

    Flickr30k: ``images``, ``examples``, ``images_skipped``, ``images_unpaired`` (mismatched,
    split of one image), ``gold_boxes_untied``, ``phrases_kept``, ``phrases_notvisual``,
    ``phrases_no_box`` (nobndbox/scene chains), ``phrases_untied``.
    Visual Genome: ``images``, ``images_skipped``, ``images_without_caption``,
    ``objects_over_max``, ``objects_untied``, ``relations_related``, ``relations_unrelated``,
    ``relations_self``, ``relations_untied`` (an end untied or cut by ``max_objects``),
    ``relations_same_region``, ``relations_duplicate``, ``unrelated_shortfall``.
    """

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, n: int = 1) -> None:
        if n:
            self.counts[key] += n

    def __getitem__(self, key: str) -> int:
        return self.counts[key]

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "nothing counted"


def _stable_int(text: str) -> int:
    """A hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _derangement(ids: Sequence[str], seed: int, salt: str) -> dict[str, str]:
    """id -> another id, a permutation without fixed points (a random cycle); {} if < 2 ids."""
    ordered = sorted(ids)
    if len(ordered) < 2:
        return {}
    rng = np.random.default_rng([seed, _stable_int(salt)])
    cycle = [ordered[i] for i in rng.permutation(len(ordered))]
    return {a: cycle[(k + 1) % len(cycle)] for k, a in enumerate(cycle)}


def _image_path(image_dir: PathLike | None, image_id: str) -> str | None:
    if image_dir is None:
        return None
    for ext in (".png", ".jpg", ".jpeg"):
        candidate = Path(image_dir) / f"{image_id}{ext}"
        if candidate.exists():
            return str(candidate)
    return None


def _check_size(
    regions: RegionFeatures, width: int, height: int, path: PathLike, image_id: str
) -> None:
    if regions.width and width and (regions.width, regions.height) != (width, height):
        raise DataFormatError(
            path,
            f"image {image_id}",
            f"region features are for a {regions.width}x{regions.height} image but the "
            f"annotation says {width}x{height}",
            "Extract features from the original images so boxes share one pixel frame",
        )


def _missing_features(path: PathLike, image_id: str) -> DataFormatError:
    return DataFormatError(
        path,
        f"image {image_id}",
        "no region features for this image",
        "Extract features for every listed image, or set data.strict=false to skip it",
    )


def _inputs(
    words: Sequence[str],
    regions: RegionFeatures,
    size: tuple[int, int],
    image_path: str | None,
) -> ModelInput:
    return ModelInput(list(words), regions.features, regions.boxes, size, image_path)


# ---------------------------------------------------------------- Flickr30k Entities
@dataclass
class _FlickrImage:
    image_id: str
    captions: list[Caption]
    regions: RegionFeatures  # the model's input regions (detections, plus gold boxes if "add")
    tied: dict[str, list[tuple[Box, int | None]]]  # chain -> (gold box, input row or None)
    size: tuple[int, int]
    image_path: str | None


def _load_flickr_image(
    ds: Flickr30kEntities,
    image_id: str,
    split: str,
    features: Mapping[str, RegionFeatures],
    tie_mode: TieMode,
    iou_threshold: float,
    image_dir: PathLike | None,
    stats: BuildStats,
) -> _FlickrImage | None:
    split_file = ds.root / f"{split}.txt"
    try:
        if image_id not in features:
            raise _missing_features(split_file, image_id)
        for sub, ext in (("Sentences", "txt"), ("Annotations", "xml")):
            if not (ds.root / sub / f"{image_id}.{ext}").exists():
                raise DataFormatError(
                    split_file,
                    f"image {image_id}",
                    f"{sub}/{image_id}.{ext} does not exist",
                    "Check the root folder, or set data.strict=false to skip the image",
                )
        captions = ds.captions(image_id)
        ann = ds.annotation(image_id)
        ann_path = ds.root / "Annotations" / f"{image_id}.xml"
        _check_size(features[image_id], ann.width, ann.height, ann_path, image_id)
    except DataFormatError as e:
        skip_or_raise(e, ds.strict, ds.problems)
        stats.add("images_skipped")
        return None
    chains = sorted(ann.boxes, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
    gold = [(c, b) for c in chains for b in ann.boxes[c]]
    regions, ties = tie_gold_boxes(
        [b for _, b in gold], features[image_id], tie_mode, iou_threshold
    )
    stats.add("gold_boxes_untied", sum(t is None for t in ties))
    tied: dict[str, list[tuple[Box, int | None]]] = {}
    for (chain, box), tie in zip(gold, ties, strict=True):
        tied.setdefault(chain, []).append((box, tie))
    size = (ann.width, ann.height) if ann.width else (regions.width, regions.height)
    return _FlickrImage(image_id, captions, regions, tied, size, _image_path(image_dir, image_id))


def _flickr_example(img: _FlickrImage, cap: Caption, split: str, stats: BuildStats) -> VLExample:
    regions: list[Region] = []
    chain_regions: dict[str, tuple[int, ...]] = {}
    for ph in cap.phrases:  # regions in order of first mention; category = that phrase's type
        if ph.chain_id == "0" or ph.chain_id in chain_regions:
            continue
        start = len(regions)
        for box, tie in img.tied.get(ph.chain_id, []):
            if tie is not None:
                regions.append(Region(tie, box, ph.types[0], ph.chain_id))
        chain_regions[ph.chain_id] = tuple(range(start, len(regions)))
    phrases: list[PhraseSpan] = []
    for ph in cap.phrases:
        if ph.chain_id == "0":
            stats.add("phrases_notvisual")
        elif not chain_regions[ph.chain_id]:
            stats.add("phrases_untied" if img.tied.get(ph.chain_id) else "phrases_no_box")
        else:
            start, end = ph.word_span
            phrases.append(
                PhraseSpan(start, end, ph.types, ph.chain_id, chain_regions[ph.chain_id])
            )
    stats.add("phrases_kept", len(phrases))
    return VLExample(
        example_id=f"{img.image_id}#{cap.index}",
        group_id=img.image_id,
        split=split,
        inputs=_inputs(cap.words, img.regions, img.size, img.image_path),
        regions=regions,
        phrases=phrases,
    )


def _all_flickr_regions(img: _FlickrImage) -> list[Region]:
    """Every tied gold box of the image; category from the image's own captions."""
    first_type: dict[str, str] = {}
    for cap in img.captions:
        for ph in cap.phrases:
            first_type.setdefault(ph.chain_id, ph.types[0])
    return [
        Region(tie, box, first_type.get(chain, UNKNOWN_CATEGORY), chain)
        for chain, pairs in img.tied.items()
        for box, tie in pairs
        if tie is not None
    ]


def build_flickr_examples(
    root: PathLike,
    features: Mapping[str, RegionFeatures],
    splits: Sequence[str] = ("train", "val", "test"),
    tie_mode: TieMode = "iou",
    iou_threshold: float = 0.5,
    mismatched: bool = False,
    seed: int = 0,
    image_dir: PathLike | None = None,
    strict: bool = True,
    problems: ProblemLog | None = None,
    *,
    stats: BuildStats | None = None,
) -> list[VLExample]:
    """One example per (image, caption) of the listed splits: visual coreference pairs.

    ``regions`` are the gold boxes of every visual chain the caption mentions that tie to an
    input region (one per box, first-mention order); ``phrases`` are the phrases of those chains.
    Notvisual phrases (chain 0), phrases whose chain has no box (``<nobndbox>``/``<scene>``) and
    phrases whose boxes did not tie are dropped and counted. Every caption of an image sees the
    same input regions. ``mismatched=True``: each image gets the captions of another image of
    the same split (a derangement fixed by ``seed``); phrases then refer to the wrong image, so
    ``phrases`` is empty and ``regions`` holds all tied gold boxes of the image; the example id
    keeps the image id and the borrowed caption's index.
    """
    st = stats if stats is not None else BuildStats()
    ds = Flickr30kEntities(root, strict, problems)
    examples: list[VLExample] = []
    for split in splits:
        loaded = [
            img
            for image_id in ds.split_ids(split)
            if (
                img := _load_flickr_image(
                    ds, image_id, split, features, tie_mode, iou_threshold, image_dir, st
                )
            )
            is not None
        ]
        st.add("images", len(loaded))
        if not mismatched:
            examples += [
                _flickr_example(img, cap, split, st) for img in loaded for cap in img.captions
            ]
            continue
        partner = _derangement([img.image_id for img in loaded], seed, split)
        by_id = {img.image_id: img for img in loaded}
        for img in loaded:
            if img.image_id not in partner:
                st.add("images_unpaired")  # a split of one image cannot be mismatched
                continue
            regions = _all_flickr_regions(img)
            for cap in by_id[partner[img.image_id]].captions:
                examples.append(
                    VLExample(
                        example_id=f"{img.image_id}#{cap.index}",
                        group_id=img.image_id,
                        split=split,
                        inputs=_inputs(cap.words, img.regions, img.size, img.image_path),
                        regions=list(regions),
                    )
                )
    st.add("examples", len(examples))
    logger.info("Flickr30k Entities examples from %s: %s", root, st.summary())
    return examples


def flickr_captions_by_image(
    root: PathLike, strict: bool = True, problems: ProblemLog | None = None
) -> dict[str, str]:
    """The first caption of each image (markup removed), e.g. as captions for VG images."""
    ds = Flickr30kEntities(root, strict, problems)
    out: dict[str, str] = {}
    for image_id in ds.image_ids():
        captions = ds.captions(image_id)
        if captions:
            out[image_id] = " ".join(captions[0].words)
    return out


# ---------------------------------------------------------------- Visual Genome
def _vg_split(image_id: str, fractions: Sequence[float]) -> str:
    u = _stable_int(f"vg-split:{image_id}") / 2.0**64
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def build_vg_examples(
    root: PathLike,
    features: Mapping[str, RegionFeatures],
    captions: Mapping[str, str] | None = None,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    tie_mode: TieMode = "iou",
    iou_threshold: float = 0.5,
    max_objects: int | None = None,
    unrelated_ratio: float = 1.0,
    mismatched: bool = False,
    seed: int = 0,
    image_dir: PathLike | None = None,
    strict: bool = True,
    problems: ProblemLog | None = None,
    *,
    stats: BuildStats | None = None,
) -> list[VLExample]:
    """One example per image with region pairs: annotated relations and sampled unrelated ones.

    Split: a stable hash of the image id against ``split_fractions`` (train, val, test),
    independent of ``seed``. ``max_objects`` keeps the objects that take part in a relation
    first, then the lowest ids. A pair is identified by its two *input* regions, so two gold
    objects tied to one detection never yield a self-pair, a repeated pair, or an "unrelated"
    pair whose input tokens equal a related one's; of repeats the first predicate wins.
    Unrelated pairs (no relation either way) number ``round(unrelated_ratio * related)``, or all
    candidates when fewer (the shortfall is counted), drawn per image from ``seed`` and the
    image id. ``words`` = ``captions[image_id].split()`` (``[]`` without captions);
    ``mismatched=True`` takes the caption of another captioned image of the same split.
    """
    if (
        len(split_fractions) != 3
        or min(split_fractions) < 0
        or abs(sum(split_fractions) - 1) > 1e-6
    ):
        raise ValueError(
            f"split_fractions must be 3 non-negative numbers summing to 1, got {split_fractions}"
        )
    if mismatched and captions is None:
        raise ValueError("mismatched=True needs captions to mismatch")
    st = stats if stats is not None else BuildStats()
    images = load_visual_genome(root, strict, problems)
    data_file = Path(root) / "image_data.json"
    examples: list[VLExample] = []
    for image_id in sorted(images):
        image = images[image_id]
        try:
            if image_id not in features:
                raise _missing_features(data_file, image_id)
            _check_size(features[image_id], image.width, image.height, data_file, image_id)
        except DataFormatError as e:
            skip_or_raise(e, strict, problems)
            st.add("images_skipped")
            continue
        objects = sorted(image.objects.values(), key=lambda o: o.object_id)
        if max_objects is not None and len(objects) > max_objects:
            related = {i for r in image.relations for i in (r.subject_id, r.object_id)}
            objects.sort(key=lambda o: (o.object_id not in related, o.object_id))
            st.add("objects_over_max", len(objects) - max_objects)
            objects = sorted(objects[:max_objects], key=lambda o: o.object_id)
        input_regions, ties = tie_gold_boxes(
            [o.box for o in objects], features[image_id], tie_mode, iou_threshold
        )
        regions: list[Region] = []
        index_of: dict[int, int] = {}  # object id -> index into regions
        for obj, tie in zip(objects, ties, strict=True):
            if tie is None:
                st.add("objects_untied")
                continue
            index_of[obj.object_id] = len(regions)
            regions.append(Region(tie, obj.box, obj.names[0], str(obj.object_id)))

        relations: list[RelationPair] = []
        related: set[tuple[int, int]] = set()  # (subject, object) input-region rows
        for rel in image.relations:
            if rel.subject_id == rel.object_id:
                st.add("relations_self")
                continue
            if rel.subject_id not in index_of or rel.object_id not in index_of:
                st.add("relations_untied")
                continue
            s, o = index_of[rel.subject_id], index_of[rel.object_id]
            pair = (regions[s].region_index, regions[o].region_index)
            if pair[0] == pair[1]:
                st.add("relations_same_region")
            elif pair in related:
                st.add("relations_duplicate")
            else:
                related.add(pair)
                relations.append(RelationPair(s, o, rel.predicate))
        n_related = len(relations)
        seen = related | {(ro, rs) for rs, ro in related}  # no relation in either direction
        candidates: list[tuple[int, int]] = []
        for s in range(len(regions)):
            for o in range(len(regions)):
                pair = (regions[s].region_index, regions[o].region_index)
                if pair[0] != pair[1] and pair not in seen:
                    seen.add(pair)  # one candidate per input-region pair
                    candidates.append((s, o))
        wanted = _round_half_up(unrelated_ratio * n_related)
        if wanted > len(candidates):
            st.add("unrelated_shortfall", wanted - len(candidates))
            wanted = len(candidates)
        rng = np.random.default_rng([seed, _stable_int(image_id)])
        chosen = sorted(rng.choice(len(candidates), size=wanted, replace=False).tolist())
        relations += [RelationPair(*candidates[k], None) for k in chosen]
        st.add("relations_related", n_related)
        st.add("relations_unrelated", wanted)

        examples.append(
            VLExample(
                example_id=image_id,
                group_id=image_id,
                split=_vg_split(image_id, split_fractions),
                inputs=_inputs(
                    [],
                    input_regions,
                    (image.width, image.height),
                    _image_path(image_dir, image_id),
                ),
                regions=regions,
                relations=relations,
            )
        )

    if captions is not None:
        by_split: dict[str, list[str]] = {s: [] for s in SPLITS}
        for ex in examples:
            if ex.example_id in captions:
                by_split[ex.split].append(ex.example_id)
        partner: dict[str, str] = {}
        if mismatched:
            for split, ids in by_split.items():
                partner.update(_derangement(ids, seed, split))
        for ex in examples:
            source = partner.get(ex.example_id) if mismatched else ex.example_id
            if source is None or source not in captions:
                st.add("images_without_caption")
                continue
            ex.inputs.words = captions[source].split()
    st.add("images", len(examples))
    logger.info("Visual Genome examples from %s: %s", root, st.summary())
    return examples


# ---------------------------------------------------------------- SentEval
def build_senteval_examples(
    path: PathLike,
    strict: bool = True,
    problems: ProblemLog | None = None,
    task: str | None = None,
) -> list[VLExample]:
    """Text-only examples of one probing file, grouped by sentence text.

    A sentence listed in two splits would leak between them: an error naming both lines
    (with ``strict=False`` the later line is skipped).
    """
    path = Path(path)
    first: dict[str, tuple[str, int]] = {}
    examples: list[VLExample] = []
    for ex in read_senteval(path, strict, problems, task):
        split, line = first.setdefault(ex.sentence, (ex.split, ex.line))
        if split != ex.split:
            error = DataFormatError(
                path,
                f"line {ex.line}",
                f"this {ex.split} sentence is also a {split} sentence at line {line}",
                "Remove one copy so the splits cannot share a sentence",
            )
            skip_or_raise(error, strict, problems)
            continue
        examples.append(
            VLExample(
                example_id=f"{path.stem}:{ex.line}",
                group_id=ex.sentence,
                split=ex.split,
                inputs=ModelInput(ex.sentence.split()),
                label=ex.label,
            )
        )
    return examples
