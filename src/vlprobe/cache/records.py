"""What the cache stores per example, and the label vocabularies: the writer's input types.

Owned by the cache (extraction produces them, the writer consumes them), so the cache package
imports nothing from extraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlprobe.cache.fields import ACTIVATION, FIELDS, ROW_SYMBOL, STRING, Field
from vlprobe.cache.schema import SPLIT_IDS
from vlprobe.data.types import FLICKR_TYPES


@dataclass
class LabelVocab:
    """Label names fixed before extraction, so ids are stable across the whole cache."""

    category: list[str]
    predicate: list[str]  # most frequent first
    sentence: list[str]

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "category": self.category,
            "predicate": self.predicate,
            "sentence": self.sentence,
            "phrase_type": list(FLICKR_TYPES),
        }


class ExampleRecord:
    """One example's arrays, by the ``source`` names of :data:`vlprobe.cache.fields.FIELDS`
    (``region_emb``, ``rel_subject`` ...); unit indices are local to the example (the writer
    offsets them). Fields of a part the example lacks may be left out: they are zeros with 0
    rows (``text``: ""). Besides the fields: ``attention_map`` (A, H, T, T) for the first few
    examples only, and ``dropped_phrases`` (phrases whose words were all truncated away)."""

    def __init__(
        self,
        *,
        attention_map: np.ndarray | None = None,
        dropped_phrases: int = 0,
        **fields: object,
    ) -> None:
        valid = ("split", *GIVEN)  # split: its name, stored as its id (split_id)
        unknown = sorted(set(fields) - set(valid))
        if unknown:
            raise TypeError(f"ExampleRecord has no field(s) {unknown}; valid: {', '.join(valid)}")
        required = ["split", *(name for name, f in GIVEN.items() if not f.optional)]
        missing = [name for name in required if name not in fields]
        if missing:
            raise TypeError(f"ExampleRecord needs {missing}")
        self.__dict__.update(fields)
        self.attention_map = attention_map
        self.dropped_phrases = dropped_phrases
        sizes = self.sizes()
        for name, f in GIVEN.items():
            if name not in fields:
                setattr(self, name, _empty(f, sizes))

    @classmethod
    def with_units(cls, **fields: object) -> ExampleRecord:
        """The record of an example with only some unit kinds (Visual Genome: regions and
        relations): the constructor itself, kept under the name callers know."""
        return cls(**fields)  # type: ignore[arg-type]

    def sizes(self) -> dict[str, int]:
        """The sizes every record has (rows of an absent part are 0): ``L``, ``T``, ``d``
        from ``hidden``, ``A``, ``H`` from ``cls_mass``."""
        layers, tokens, dim = self.hidden.shape
        heads = self.cls_mass.shape[:2]
        return {"L": layers, "T": tokens, "d": dim, "A": heads[0], "H": heads[1]}

    # -- values the writer stores that follow from the fields ----------------------------------
    @property
    def num_tokens(self) -> int:
        return int(self.modality.shape[0])

    @property
    def n_image(self) -> int:
        return int((self.modality == 1).sum())

    @property
    def n_text(self) -> int:
        return self.num_tokens - self.n_image

    @property
    def split_id(self) -> int:
        return SPLIT_IDS[self.split]

    @property
    def pairs_per_phrase(self) -> np.ndarray:
        """Coreference pairs of each phrase (its rows in ``pairs/coref``, sorted by phrase)."""
        return np.bincount(self.coref_phrase, minlength=self.phrase_type.shape[0])


def _empty(f: Field, sizes: dict[str, int]) -> object:
    """A field an example lacks: "" for a string, else zeros with 0 rows of its part."""
    if f.dtype == STRING:
        return ""
    row = ROW_SYMBOL[f.part]
    shape = [0 if s == row else s if isinstance(s, int) else sizes[s] for s in f.record_shape()]
    dtype = np.float32 if f.dtype == ACTIVATION else np.dtype(f.dtype)
    return np.zeros(shape, dtype)


# the fields a record is given: those with a source that is not derived above
GIVEN: dict[str, Field] = {
    f.source: f
    for f in FIELDS
    if f.source and f.kind in ("rows", "example") and not hasattr(ExampleRecord, f.source)
}
