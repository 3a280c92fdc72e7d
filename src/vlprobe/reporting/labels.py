"""Short, unique names for the groups of a report, and short, stable file names.

A report may hold runs that differ in many config keys (an ablation over probe family x seed x
learning rate x ...). A group's label names only what tells it apart: the model, then the keys
that vary between groups, each by its shortest unambiguous suffix (``max_epochs=30`` for
``trainer.max_epochs``). Keys that add nothing are left out as long as every label stays
unique: a key set in some groups and absent (None) in the others (``probe.dropout`` exists
for MLP probes only), a key of the probe's config (``probe.*``, named by the rows' family and
capacity), a key that changes together with another. The full settings are in the report's
settings table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from vlprobe.hashing import text_sha256

#: the row-level group key of the probe: ``(family, ((capacity key, value), ...))``
PROBE = "probe"
#: the row-level group key of another model inside a run (the linguistic text baseline)
ROW_MODEL = "row.model"
#: the config keys the base of a label shows as words, not as ``key=value``
MODEL_KEYS = ("model.name", "model.random_init", "data.mismatched")
MAX_FILE_STEM = 80


def probe_spec(row: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """The row's probe family and capacity as one hashable value (its ``probe`` group key)."""
    capacity = row.get("capacity") or {}
    return str(row.get("family")), tuple(sorted((str(k), hashable(v)) for k, v in capacity.items()))


def probe_label(spec: Any, capacity_keys: Sequence[str] | None = None) -> str:
    """``linear``, ``mlp hidden_dim=64``: the family and the capacity keys asked for (all of
    them by default)."""
    family, capacity = spec
    shown = [(k, v) for k, v in capacity if capacity_keys is None or k in capacity_keys]
    return " ".join([family, *(f"{k}={format_value(v)}" for k, v in shown)])


def varying_capacity(specs: Sequence[Any]) -> list[str]:
    """The capacity keys whose value differs between probes of one family."""
    seen: dict[tuple[str, str], set[Any]] = {}
    for family, capacity in specs:
        for key, value in capacity:
            seen.setdefault((family, key), set()).add(value)
    return sorted({key for (_, key), values in seen.items() if len(values) > 1})


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key by its shortest suffix no other key ends with (``max_epochs``)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(o != key and (o == suffix or o.endswith(f".{suffix}")) for o in keys):
                break
        out[key] = suffix
    return out


def format_value(value: Any) -> str:
    """``0.001``, ``true``, ``none``: a config value as a label shows it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def group_labels(keys: Sequence[Mapping[str, Any]], varying: Sequence[str]) -> list[str]:
    """One unique label per group key (a mapping of key -> value), in order."""
    capacity = varying_capacity([k[PROBE] for k in keys if k.get(PROBE) is not None])
    shown = shown_keys(keys, varying, capacity)
    return [label(key, shown, capacity) for key in keys]


def shown_keys(
    keys: Sequence[Mapping[str, Any]], varying: Sequence[str], capacity: Sequence[str] = ()
) -> list[str]:
    """``varying`` less the keys the labels do not need: each key whose removal leaves every
    label unique is dropped, first the keys absent (None) in some groups, then the probe's
    config keys (``probe.*``, implied by its family and capacity), then the longest."""

    def unset(k: str) -> bool:
        return any(key.get(k) is None for key in keys)

    optional = [k for k in varying if k not in (*MODEL_KEYS, PROBE, ROW_MODEL)]
    optional.sort(key=lambda k: (not unset(k), not k.startswith(f"{PROBE}."), -len(k)))
    shown, distinct = list(varying), len({_freeze(g) for g in keys})
    for key in optional:
        trial = [k for k in shown if k != key]
        if len({label(g, trial, capacity) for g in keys}) == distinct:
            shown = trial
    return shown


def label(key: Mapping[str, Any], shown: Sequence[str], capacity: Sequence[str] = ()) -> str:
    """``visualbert-minilm (random init) [mlp hidden_dim=64] [lr=0.01]``: the ``shown`` keys,
    the probe with its ``capacity`` keys; a row-level model (the text baseline) names the
    group after it."""
    text = str(key.get("model.name") or "run")
    if key.get("model.random_init"):
        text += " (random init)"
    if key.get("data.mismatched"):
        text += " (mismatched)"
    if PROBE in shown and key.get(PROBE) is not None:
        text += f" [{probe_label(key[PROBE], capacity)}]"
    names = short_keys([k for k in shown if k not in (*MODEL_KEYS, PROBE, ROW_MODEL)])
    for k, short in names.items():
        text += f" [{short}={format_value(key.get(k))}]"
    extra = key.get(ROW_MODEL)
    return f"{extra} (baseline of {text})" if extra else text


def slug(*parts: str) -> str:
    """A file-name-safe join of ``parts``; longer than ``MAX_FILE_STEM`` characters, it is
    cut and ends in a hash of the whole, so names stay short, unique and stable."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(p for p in parts if p)).strip("_") or "all"
    if len(text) <= MAX_FILE_STEM:
        return text
    digest = text_sha256(text, 10)
    return f"{text[: MAX_FILE_STEM - 11].rstrip('_')}_{digest}"


def _freeze(key: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in key.items()))


def hashable(value: Any) -> Any:
    """A config or row value as a group key can hold it (lists and dicts as tuples)."""
    if isinstance(value, list):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, hashable(v)) for k, v in value.items()))
    return value
