"""What a result row measures, as fields: the probe identity, its family and the family's capacity.

Every row of every task carries ``kind``, ``layer``, ``head``, ``stream``, ``family`` and
``capacity``; reports, figures and W&B tables read those fields and never parse a row's
``name`` (kept for display only). Numbering, once for all tasks:

- ``kind="layer"``: ``layer`` is the hidden-state index, 0 = the embeddings, ``L`` = the
  output of transformer layer ``L``; ``head`` is None.
- ``kind="head"``: ``layer`` is the 1-based transformer layer whose attention it reads (its
  output is hidden state ``layer``), ``head`` the 1-based head, as in the name ``L01H02``.
- ``kind="all_heads"``: one probe over every head of every layer; ``layer`` and ``head`` None.

``stream`` names one stream of a multi-stream model (LXMERT), else None. ``family`` is the
probe family's short name (``linear``, ``mlp``, ``lowrank``; ``none`` for a training-free
measure) and ``capacity`` the values of the family's own ``capacity_keys``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.utils import get_class

KINDS = ("layer", "head", "all_heads")
#: the ``family`` of a training-free measure (attention shares, alignment, clustering)
NO_FAMILY = "none"
#: the fields every row carries (see the module docstring)
IDENTITY_FIELDS = ("kind", "layer", "head", "stream", "family", "capacity")


@dataclass(frozen=True)
class ProbeId:
    """Which activations one probe (or measure) reads; see the module docstring."""

    kind: str
    layer: int | None = None
    head: int | None = None
    stream: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"probe kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        ok = {
            "layer": self.layer is not None and self.layer >= 0 and self.head is None,
            "head": self.layer is not None and self.layer >= 1 and (self.head or 0) >= 1,
            "all_heads": self.layer is None and self.head is None,
        }[self.kind]
        if not ok:
            raise ValueError(f"inconsistent probe identity {self}")

    @property
    def name(self) -> str:
        """The display name: ``layer_03``, ``L01H02``, ``all_heads``."""
        if self.kind == "layer":
            return f"layer_{self.layer:02d}"
        if self.kind == "head":
            return f"L{self.layer:02d}H{self.head:02d}"
        return "all_heads"

    def as_fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "layer": self.layer, "head": self.head, "stream": self.stream}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ProbeId | None:
        """The identity a row carries, or None for a row written before rows had one."""
        if row.get("kind") not in KINDS:
            return None
        return cls(row["kind"], row.get("layer"), row.get("head"), row.get("stream"))


def layer_ids(layers: Sequence[int], stream: str | None = None) -> list[ProbeId]:
    """One probe per hidden state in ``layers`` (0 = embeddings)."""
    return [ProbeId("layer", int(i), stream=stream) for i in layers]


def head_ids(num_layers: int, num_heads: int, stream: str | None = None) -> list[ProbeId]:
    """One probe per head, layer-major, 1-based (``L01H01``, ``L01H02``, ...)."""
    return [
        ProbeId("head", a + 1, h + 1, stream) for a in range(num_layers) for h in range(num_heads)
    ]


def family_fields(probe: Callable[..., Any]) -> dict[str, Any]:
    """``family`` and ``capacity`` of the configured probe module (a partial of ``MultiProbe``
    whose ``family`` keyword is a ``ProbeFamily`` class or its import path, default the
    module's own default): each of the family's ``capacity_keys`` as configured, else the
    family's default for it."""
    keywords = dict(getattr(probe, "keywords", {}) or {})
    family = keywords.get("family", _default(getattr(probe, "func", probe), "family"))
    family = get_class(family) if isinstance(family, str) else family
    capacity = {
        key: keywords[key] if key in keywords else _default(family, key)
        for key in getattr(family, "capacity_keys", ())
    }
    return {"family": str(getattr(family, "name", family.__name__)), "capacity": capacity}


def _default(fn: Callable[..., Any], parameter: str) -> Any:
    param = inspect.signature(fn).parameters.get(parameter)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def measure_fields(probe_id: ProbeId) -> dict[str, Any]:
    """All identity fields of a training-free measure's row."""
    return {**probe_id.as_fields(), "family": NO_FAMILY, "capacity": {}}


def stamp_rows(
    rows: Sequence[dict[str, Any]], ids: Sequence[ProbeId], family: Mapping[str, Any]
) -> None:
    """Write identity (``ids[k]`` into ``rows[k]``), ``family`` and ``capacity`` into rows."""
    if len(ids) != len(rows):
        raise ValueError(
            f"{len(rows)} rows but {len(ids)} probe identities: build the view's probes with "
            "datamodules.views.layer_probe_ids / head_probe_ids"
        )
    for probe_id, row in zip(ids, rows, strict=True):
        row.update(probe_id.as_fields())
        row["family"] = family["family"]
        row["capacity"] = dict(family["capacity"])
