"""Write the activation cache: append per-example records, publish atomically at the end.

The file is written to this writer's own ``<path>.<pid>-<random>.partial`` and, after the
``complete`` flag is set and the bytes are on disk (fsync), renamed onto ``path`` in one step:
a killed extraction never leaves a file at the final path that looks finished, and two writers
never share a partial file. Every dataset carries a Fletcher-32 checksum per chunk, so a cache
corrupted on disk fails to read instead of returning wrong numbers. A multi-stream model
(LXMERT) writes one group per stream, each laid out like a one-sequence file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from vlprobe import __version__
from vlprobe.cache.records import ExampleRecord, LabelVocab
from vlprobe.cache.schema import (
    CORE_GROUPS,
    PARTS,
    SCHEMA_VERSION,
    SPLIT_IDS,
    example_path,
    expand_parts,
    pair_path,
    part_of,
    partial_path,
    rows_per_chunk,
    stream_group,
    token_path,
    unit_path,
)

_STR = h5py.string_dtype()


def cast_activations(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``data`` as ``dtype``, on arrival: queued batches then hold half the bytes.

    float32 -> float16 goes through torch (F16C instructions): numpy converted ~5x slower,
    the largest part of the writer's time next to the model (bench/extraction_overhead.py).
    """
    data = np.asarray(data)
    if data.dtype == dtype:
        return data
    if dtype == np.float16 and data.dtype == np.float32:
        import torch

        return torch.from_numpy(np.ascontiguousarray(data)).to(torch.float16).numpy()
    return data.astype(dtype)


def _set_attrs(target: h5py.Group, attrs: Mapping[str, object]) -> None:
    """Numbers and strings as they are, anything else as JSON (the reader decodes it)."""
    for key, value in attrs.items():
        target.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)


def fsync_path(path: Path) -> None:
    """Force a file's bytes (or a folder's entries) to disk: publication survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Tables:
    """The growing datasets of one token sequence: the file itself, or one stream's group."""

    def __init__(self, group: h5py.Group, parts: frozenset[str], dtype: np.dtype) -> None:
        self.group, self.parts, self.dtype = group, parts, dtype
        self.counts = {"examples": 0, "tokens": 0, "region": 0, "phrase": 0, "sentence": 0}
        self.token_offsets = [0]
        self.phrase_pair_counts: list[int] = []
        self.dropped_phrases = 0
        self._pending: dict[str, tuple[int, object, list[np.ndarray]]] = {}

    # -- low level ------------------------------------------------------------------------
    def _append(self, name: str, data: np.ndarray, axis: int = 0, dtype=None) -> None:
        """Queue ``data`` for dataset ``name``; written in one resize per flush, not per example.
        Datasets of parts this cache does not hold are dropped here."""
        if part_of(name) not in self.parts and part_of(name) not in CORE_GROUPS:
            return
        self._pending.setdefault(name, (axis, dtype, []))[2].append(np.asarray(data))

    def flush(self) -> None:
        """Write everything queued since the last flush (called once per extraction batch)."""
        for name, (axis, dtype, parts) in self._pending.items():
            self._write(name, np.concatenate(parts, axis=axis), axis, dtype)
        self._pending.clear()

    def _write(self, name: str, data: np.ndarray, axis: int, dtype) -> None:
        """Grow dataset ``name`` along ``axis`` by ``data``; created on first use."""
        dtype = data.dtype if dtype is None else dtype
        if name not in self.group:
            shape = list(data.shape)
            shape[axis] = 0
            maxshape = list(data.shape)
            maxshape[axis] = None
            row_bytes = int(np.prod([s for i, s in enumerate(data.shape) if i > axis] or [1]))
            row_bytes *= np.dtype(dtype).itemsize if dtype is not _STR else 16
            chunks = [1] * axis + [rows_per_chunk(row_bytes)] + list(data.shape[axis + 1 :])
            self.group.create_dataset(
                name,
                shape=tuple(shape),
                maxshape=tuple(maxshape),
                dtype=dtype,
                chunks=tuple(chunks),
                fletcher32=dtype is not _STR,  # HDF5 checksums fixed-size data only
            )
        ds = self.group[name]
        start = ds.shape[axis]
        if data.shape[axis] == 0:
            return
        new_shape = list(ds.shape)
        new_shape[axis] = start + data.shape[axis]
        ds.resize(tuple(new_shape))
        index = [slice(None)] * data.ndim
        index[axis] = slice(start, start + data.shape[axis])
        ds[tuple(index)] = data.astype(dtype, copy=False) if dtype is not _STR else data

    def _act(self, name: str, data: np.ndarray, axis: int) -> None:
        self._append(name, cast_activations(data, self.dtype), axis=axis, dtype=self.dtype)

    # -- records ------------------------------------------------------------------------
    def add(self, rec: ExampleRecord) -> None:
        e = self.counts["examples"]
        n_image = int((rec.modality == 1).sum())
        self._append(example_path("id"), np.array([rec.example_id], dtype=object), dtype=_STR)
        self._append(example_path("group"), np.array([rec.group_id], dtype=object), dtype=_STR)
        self._append(example_path("text"), np.array([rec.text], dtype=object), dtype=_STR)
        self._append(example_path("split"), np.array([SPLIT_IDS[rec.split]], np.int8))
        self._append(example_path("n_text"), np.array([rec.num_tokens - n_image], np.int32))
        self._append(example_path("n_image"), np.array([n_image], np.int32))
        self._act(token_path("hidden"), rec.hidden, axis=1)
        self._append(token_path("modality"), rec.modality)
        self._append(token_path("word_index"), rec.word_index)
        self._act("attention/cls_mass", rec.cls_mass[None], axis=0)
        self._act("attention/cls_special_mass", rec.cls_special_mass[None], axis=0)
        self.counts["tokens"] += rec.num_tokens
        self.token_offsets.append(self.counts["tokens"])

        region0, phrase0 = self.counts["region"], self.counts["phrase"]
        num_regions, num_phrases = rec.region_category.shape[0], rec.phrase_type.shape[0]
        self._act(unit_path("region", "embedding"), rec.region_emb, axis=1)
        self._append(unit_path("region", "example"), np.full(num_regions, e, np.int32))
        self._append(unit_path("region", "category"), rec.region_category)
        self._append(unit_path("region", "box"), rec.region_box)
        self._act(unit_path("phrase", "embedding"), rec.phrase_emb, axis=1)
        self._append(unit_path("phrase", "example"), np.full(num_phrases, e, np.int32))
        self._append(unit_path("phrase", "type"), rec.phrase_type)
        self._append(unit_path("phrase", "types"), rec.phrase_types)
        self._append(unit_path("phrase", "word_span"), rec.phrase_span)
        self._append(unit_path("phrase", "grounding"), rec.phrase_grounding.astype(np.float32))
        self._append(unit_path("phrase", "grounding_chance"), rec.phrase_grounding_chance)
        num_sentences = rec.sentence_label.shape[0]
        self._act(unit_path("sentence", "cls"), rec.sentence_cls, axis=1)
        self._act(unit_path("sentence", "mean"), rec.sentence_mean, axis=1)
        self._append(unit_path("sentence", "example"), np.full(num_sentences, e, np.int32))
        self._append(unit_path("sentence", "label"), rec.sentence_label)

        self._append(pair_path("relation", "subject"), rec.rel_subject + region0)
        self._append(pair_path("relation", "object"), rec.rel_object + region0)
        self._append(pair_path("relation", "related"), rec.rel_related)
        self._append(pair_path("relation", "predicate"), rec.rel_predicate)
        self._act(pair_path("relation", "attention"), rec.rel_attention, axis=0)
        self._append(pair_path("coref", "phrase"), rec.coref_phrase + phrase0)
        self._append(pair_path("coref", "region"), rec.coref_region + region0)
        self._append(pair_path("coref", "corefer"), rec.coref_corefer)
        self._act(pair_path("coref", "attention"), rec.coref_attention, axis=0)
        self.phrase_pair_counts.extend(np.bincount(rec.coref_phrase, minlength=num_phrases))

        if rec.attention_map is not None and "maps" in self.parts:
            self.group.create_dataset(
                f"attention/maps/{e}",
                data=cast_activations(rec.attention_map, self.dtype),
                compression="gzip",
                fletcher32=True,
            )
        self.counts["examples"] += 1
        self.counts["region"] += num_regions
        self.counts["phrase"] += num_phrases
        self.counts["sentence"] += num_sentences
        self.dropped_phrases += rec.dropped_phrases

    def finish(self) -> None:
        """The offset arrays (known only at the end), then everything still queued."""
        self._append(example_path("token_offset"), np.asarray(self.token_offsets, np.int64))
        pair_offset = np.concatenate([[0], np.cumsum(self.phrase_pair_counts)]).astype(np.int64)
        self._append(unit_path("phrase", "pair_offset"), pair_offset)
        self.flush()
        self.group.attrs["dropped_phrases"] = self.dropped_phrases


class CacheWriter:
    """Appends :class:`ExampleRecord` s to growing, chunked HDF5 datasets.

    ``streams`` (a multi-stream model, LXMERT): stream name -> its own attributes (layer
    names, ...). Each stream is a group ``streams/<name>`` laid out like a one-sequence cache,
    with the file's attributes overridden by its own; every example is added to every stream.
    """

    file: h5py.File | None

    def __init__(
        self,
        path: str | Path,
        attrs: dict[str, object],
        labels: LabelVocab,
        dtype: str = "float16",
        parts: Iterable[str] | None = None,
        streams: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        """``parts``: the optional parts to write besides the core (None: every part)."""
        self.path = Path(path)
        self.parts = expand_parts(PARTS if parts is None else parts)
        self.partial = partial_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.partial, "w")
        self.dtype = np.dtype(dtype)
        common = {
            **attrs,
            "schema_version": SCHEMA_VERSION,
            "vlprobe_version": __version__,
            "label_names": labels.as_dict(),
            "dtype": self.dtype.name,
            "parts": sorted(self.parts),
        }
        _set_attrs(self.file, {**common, "complete": 0})
        if not streams:
            self.tables = {None: _Tables(self.file, self.parts, self.dtype)}
            return
        self.file.attrs["streams"] = json.dumps(list(streams))
        self.tables = {}
        for name, own in streams.items():
            group = self.file.create_group(stream_group(name))
            _set_attrs(group, {**common, **own, "stream": name})
            self.tables[name] = _Tables(group, self.parts, self.dtype)

    @property
    def counts(self) -> dict:
        """Rows written per table (per stream: stream -> rows per table)."""
        if None in self.tables:
            return self.tables[None].counts
        return {name: tables.counts for name, tables in self.tables.items()}

    def add(self, rec: ExampleRecord, stream: str | None = None) -> None:
        """Append one example's record (to ``stream``'s group in a multi-stream cache)."""
        if stream not in self.tables:
            raise KeyError(f"stream {stream!r}: this cache holds {list(self.tables)}")
        self.tables[stream].add(rec)

    def flush(self) -> None:
        for tables in self.tables.values():
            tables.flush()

    def close(self) -> Path:
        """Finish the file and move it to its final path."""
        assert self.file is not None
        rows = {tables.counts["examples"] for tables in self.tables.values()}
        if len(rows) > 1:
            raise RuntimeError(f"streams of {self.path} hold different example counts {rows}")
        for tables in self.tables.values():
            tables.finish()
        self.file.attrs["dropped_phrases"] = max(t.dropped_phrases for t in self.tables.values())
        self.file.attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.file.attrs["complete"] = 1
        self.file.close()
        self.file = None
        fsync_path(self.partial)
        os.replace(self.partial, self.path)
        fsync_path(self.path.parent)  # the rename itself survives a crash
        return self.path

    def abort(self) -> None:
        """Drop the partial file: a failed extraction leaves nothing that looks like a cache."""
        if self.file:
            self.file.close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
