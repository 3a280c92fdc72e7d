"""Probe identity as data: one numbering for every task, the family's own capacity keys."""

from __future__ import annotations

from functools import partial

import pytest

from datamodules.views import head_probe_ids, layer_probe_ids
from probes.families import LinearProbe, LowRankProbe, MLPProbe
from probes.multi_probe import MultiProbe
from vlprobe.reporting.identity import ProbeId, family_fields, measure_fields, stamp_rows


def test_probe_ids_name_and_number_probes_once() -> None:
    assert [p.name for p in layer_probe_ids([0, 3])] == ["layer_00", "layer_03"]
    heads = head_probe_ids(2, 3, stream="vision")
    assert [p.name for p in heads] == ["L01H01", "L01H02", "L01H03", "L02H01", "L02H02", "L02H03"]
    assert heads[4] == ProbeId("head", 2, 2, "vision")  # layer-major, 1-based
    assert ProbeId("all_heads").as_fields() == {
        "kind": "all_heads",
        "layer": None,
        "head": None,
        "stream": None,
    }
    row = {"kind": "head", "layer": 2, "head": 2, "stream": "vision", "name": "ignored"}
    assert ProbeId.from_row(row) == heads[4]
    assert ProbeId.from_row({"name": "identification/head/L02H02"}) is None  # names are no id
    for bad in (("head", 0, 1), ("layer", 1, 2), ("all_heads", 3, None), ("neuron", 1, None)):
        with pytest.raises(ValueError):
            ProbeId(*bad)


def test_family_and_capacity_come_from_the_family_class() -> None:
    assert MLPProbe.capacity_keys == ("hidden_dim", "num_hidden_layers")
    assert LowRankProbe.capacity_keys == ("rank",) and LinearProbe.capacity_keys == ()
    assert family_fields(partial(MultiProbe, lr=0.01)) == {"family": "linear", "capacity": {}}
    mlp = partial(MultiProbe, family=MLPProbe, hidden_dim=32, dropout=0.1)
    assert family_fields(mlp) == {
        "family": "mlp",
        "capacity": {"hidden_dim": 32, "num_hidden_layers": 1},  # unset: the class default
    }
    lowrank = partial(MultiProbe, family="probes.families.LowRankProbe", rank=4)  # from yaml
    assert family_fields(lowrank) == {"family": "lowrank", "capacity": {"rank": 4}}


def test_stamp_rows_writes_every_identity_field() -> None:
    rows = [{"test_acc": 0.5}, {"test_acc": 0.6}]
    family = {"family": "mlp", "capacity": {"hidden_dim": 8}}
    stamp_rows(rows, layer_probe_ids([0, 5]), family)
    assert rows[1] == {
        "test_acc": 0.6,
        "kind": "layer",
        "layer": 5,
        "head": None,
        "stream": None,
        "family": "mlp",
        "capacity": {"hidden_dim": 8},
    }
    assert rows[0]["capacity"] is not rows[1]["capacity"]  # rows do not share one dict
    with pytest.raises(ValueError, match="probe identities"):
        stamp_rows(rows, layer_probe_ids([0]), family)
    assert measure_fields(ProbeId("layer", 2))["family"] == "none"


def test_a_view_refuses_identities_that_do_not_name_its_probes() -> None:
    import numpy as np

    from datamodules.views import PairAttentionView

    common = {"reader": None, "labels": np.zeros(2, np.int64), "class_names": ["a", "b"]}
    common["row_split"] = np.zeros(2, np.int8)
    ids = head_probe_ids(1, 2)
    view = PairAttentionView(**common, probe_names=["L01H01", "L01H02"], probe_ids=ids)
    assert view.with_labels(np.ones(2, np.int64)).probe_ids == ids  # controls keep them
    with pytest.raises(ValueError, match="probe_ids"):
        PairAttentionView(**common, probe_names=["L01H02", "L01H01"], probe_ids=ids)
