"""Every dataset of a cache's token sequence, declared once (docs/cache_format.md).

The writer, the shard merge, the reader's accessors, ``vlprobe verify`` and the per-example
record (:class:`vlprobe.cache.records.ExampleRecord`) loop over :data:`FIELDS`; none of them
names a field of its own. A field says where it lives (``path``), which part of the cache
holds it (what a task's ``reads`` names; ``examples`` and ``tokens`` are the core every cache
holds), its dtype, its shape rule, where its values come from in a record, how it is
checksummed, and whether its values are row numbers of another table.

Shape symbols: ``E`` examples, ``T`` tokens, ``L`` hidden layers, ``d`` hidden size, ``A``
attention layers, ``H`` heads, ``R`` regions, ``P`` phrases, ``S`` sentences, ``N`` relation
pairs, ``M`` coreference pairs; integers are fixed sizes. The row symbol of a field's part is
its growing axis; a record holds one example's rows (``E`` is left out: one row per example).
"""

from __future__ import annotations

from dataclasses import dataclass

# the symbol counting each part's rows; a part's datasets all have that many along their axis
ROW_SYMBOL: dict[str, str] = {
    "examples": "E",
    "tokens": "T",
    "token_states": "T",
    "region": "R",
    "phrase": "P",
    "sentence": "S",
    "relation": "N",
    "coref": "M",
}
# tables whose row counts the writer keeps (shard_counts): what index fields point into
COUNTED_TABLES: tuple[str, ...] = ("examples", "tokens", "region", "phrase", "sentence")

ACTIVATION = "activation"  # stored as the cache's activation dtype (extraction.dtype)
STRING = "str"  # variable-length UTF-8


@dataclass(frozen=True)
class Field:
    """One dataset of a token sequence's group.

    ``kind``: ``rows`` (the record's array is its rows); ``example`` (set for a shape starting
    with ``E``: the record's value is the example's one row); ``owner`` (computed: the owning
    example's row, for each unit); ``offset`` (computed: running totals from 0 of the
    record's per-row counts in ``source``, one row more than the table it indexes).
    ``checksum``: ``chunk`` (HDF5 Fletcher-32 per chunk, checked on every read) or ``sha256``
    (variable-length strings, which HDF5 cannot checksum: a digest over the values, stored in
    the group's ``checksums`` attribute).
    """

    path: str
    part: str
    dtype: str
    shape: tuple[str | int, ...]
    source: str | None  # ExampleRecord attribute (None: computed by the writer)
    kind: str = "rows"
    index_into: str | None = None  # a table whose row numbers it holds: shifted when appended
    optional: bool = True  # a record may leave it out: zeros with 0 rows (strings: "")
    nan_without_text: bool = False  # NaN by design in a sequence without text tokens
    doc: str = ""

    def __post_init__(self) -> None:
        if self.shape[0] == "E" and self.kind == "rows":  # one row per example
            object.__setattr__(self, "kind", "example")

    @property
    def checksum(self) -> str:
        return "sha256" if self.dtype == STRING else "chunk"

    @property
    def axis(self) -> int:
        """The growing axis: where the part's row symbol is (offsets grow along axis 0)."""
        row = ROW_SYMBOL[self.part]
        return self.shape.index(row) if row in self.shape else 0

    @property
    def per_layer(self) -> bool:
        """Axis 0 is the hidden layers (``L``): checked against ``num_layers + 1``."""
        return self.shape[0] == "L"

    @property
    def per_head(self) -> bool:
        """Axes 1, 2 are (attention layer, head): checked against the attributes."""
        return self.shape[1:3] == ("A", "H")

    @property
    def floating(self) -> bool:
        return self.dtype in (ACTIVATION, "float32")

    def record_shape(self) -> tuple[str | int, ...]:
        """The shape of its value in one example's record (``E`` left out)."""
        return tuple(s for s in self.shape if s != "E")


def _f(path: str, part: str, dtype: str, shape: tuple[str | int, ...], source, **kw) -> Field:
    return Field(path, part, dtype, shape, source, **kw)


def _owner(unit: str) -> Field:
    """``units/<unit>/example``: each unit's example row (computed by the writer)."""
    rows = (ROW_SYMBOL[unit],)
    return Field(f"units/{unit}/example", unit, "int32", rows, None, "owner", "examples")


_ACT = ACTIVATION
FIELDS: tuple[Field, ...] = (
    # -- core: examples (one row each) and tokens ------------------------------------------
    _f("examples/id", "examples", STRING, ("E",), "example_id", optional=False),
    _f("examples/group", "examples", STRING, ("E",), "group_id", optional=False),
    _f("examples/text", "examples", STRING, ("E",), "text"),
    _f("examples/split", "examples", "int8", ("E",), "split_id", optional=False),
    _f("examples/n_text", "examples", "int32", ("E",), "n_text", optional=False),
    _f("examples/n_image", "examples", "int32", ("E",), "n_image", optional=False),
    _f("tokens/hidden", "token_states", _ACT, ("L", "T", "d"), "hidden", optional=False),
    _f("tokens/modality", "tokens", "int8", ("T",), "modality", optional=False),
    _f("tokens/word_index", "tokens", "int32", ("T",), "word_index", optional=False),
    _f(
        "attention/cls_mass",
        "examples",
        _ACT,
        ("E", "A", "H", 2),
        "cls_mass",
        optional=False,
        nan_without_text=True,
    ),
    _f("attention/cls_special_mass", "examples", _ACT, ("E", "A", "H"), "cls_special_mass"),
    # -- units ---------------------------------------------------------------------------
    _f("units/region/embedding", "region", _ACT, ("L", "R", "d"), "region_emb"),
    _owner("region"),
    _f("units/region/category", "region", "int32", ("R",), "region_category"),
    _f("units/region/box", "region", "float32", ("R", 4), "region_box"),
    _f("units/phrase/embedding", "phrase", _ACT, ("L", "P", "d"), "phrase_emb"),
    _owner("phrase"),
    _f("units/phrase/type", "phrase", "int8", ("P",), "phrase_type"),
    _f("units/phrase/types", "phrase", "bool", ("P", 8), "phrase_types"),
    _f("units/phrase/word_span", "phrase", "int32", ("P", 2), "phrase_span"),
    _f("units/phrase/grounding", "phrase", "float32", ("P", "A", "H"), "phrase_grounding"),
    _f("units/phrase/grounding_chance", "phrase", "float32", ("P",), "phrase_grounding_chance"),
    _f("units/sentence/cls", "sentence", _ACT, ("L", "S", "d"), "sentence_cls"),
    _f("units/sentence/mean", "sentence", _ACT, ("L", "S", "d"), "sentence_mean"),
    _owner("sentence"),
    _f("units/sentence/label", "sentence", "int32", ("S",), "sentence_label"),
    # -- pairs of units --------------------------------------------------------------------
    _f("pairs/relation/subject", "relation", "int64", ("N",), "rel_subject", index_into="region"),
    _f("pairs/relation/object", "relation", "int64", ("N",), "rel_object", index_into="region"),
    _f("pairs/relation/related", "relation", "int8", ("N",), "rel_related"),
    _f("pairs/relation/predicate", "relation", "int32", ("N",), "rel_predicate"),
    _f("pairs/relation/attention", "relation", _ACT, ("N", "A", "H", 2), "rel_attention"),
    _f("pairs/coref/phrase", "coref", "int64", ("M",), "coref_phrase", index_into="phrase"),
    _f("pairs/coref/region", "coref", "int64", ("M",), "coref_region", index_into="region"),
    _f("pairs/coref/corefer", "coref", "int8", ("M",), "coref_corefer"),
    _f("pairs/coref/attention", "coref", _ACT, ("M", "A", "H", 2), "coref_attention"),
    # -- running totals, written when the last example is in ----------------------------------
    _f("examples/token_offset", "examples", "int64", ("E+1",), "num_tokens", kind="offset"),
    _f("units/phrase/pair_offset", "phrase", "int64", ("P+1",), "pairs_per_phrase", kind="offset"),
)
BY_PATH: dict[str, Field] = {f.path: f for f in FIELDS}
MAPS = "attention/maps"  # part ``maps``: one (A, H, T_e, T_e) dataset per kept example, by row


def field(path: str) -> Field:
    """The declaration of dataset ``path`` (a path inside a token sequence's group)."""
    try:
        return BY_PATH[path]
    except KeyError:
        raise KeyError(f"dataset {path!r} is not declared in vlprobe.cache.fields") from None


def part_fields(part: str) -> tuple[Field, ...]:
    """The datasets of ``part`` whose lengths agree (running totals left out)."""
    return tuple(f for f in FIELDS if f.part == part and f.kind != "offset")
