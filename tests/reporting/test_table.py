import csv
import json

import numpy as np

from vlprobe.reporting.table import format_table, write_results


def test_format_table_aligns_columns():
    rows = [
        {"layer": "emb", "acc": 0.5, "n": 10},
        {"layer": "L12", "acc": np.float32(0.91234), "n": np.int64(1000)},
        {"layer": "L13"},  # missing values stay blank
    ]
    text = format_table(rows, ["layer", "acc", "n"], title="SentLen")
    lines = text.splitlines()
    assert lines[0] == "SentLen"
    assert lines[1].split() == ["layer", "acc", "n"]
    assert lines[3] == "emb    0.500    10"
    assert lines[4] == "L12    0.912  1000"
    assert lines[5] == "L13"
    assert set(lines[2]) == {"-", " "}
    assert format_table(rows[:1], ["acc"], floatfmt=".1%").splitlines()[-1].strip() == "50.0%"


def test_write_results_round_trip(tmp_path):
    rows = [
        {"task": "SentLen", "layer": 1, "acc": 0.75},
        {"task": "SentLen", "layer": 2, "acc": np.float64(0.8), "seed": np.int64(3)},
        {"task": "TreeDepth", "layer": 1, "acc": float("nan")},
    ]
    json_path, csv_path = write_results(rows, tmp_path / "out")
    assert json_path.name == "results.json" and csv_path.name == "results.csv"
    loaded = json.loads(json_path.read_text())
    assert loaded == [
        {"task": "SentLen", "layer": 1, "acc": 0.75},
        {"task": "SentLen", "layer": 2, "acc": 0.8, "seed": 3},
        {"task": "TreeDepth", "layer": 1, "acc": None},
    ]
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["task", "layer", "acc", "seed"]
        back = list(reader)
    assert back[0] == {"task": "SentLen", "layer": "1", "acc": "0.75", "seed": ""}
    assert back[1]["seed"] == "3" and back[2]["acc"] == ""
    assert write_results([], tmp_path, stem="empty")[0].read_text().strip() == "[]"


def test_small_numbers_are_not_printed_as_zero() -> None:
    rows = [{"l2": 1e-5}, {"l2": 0.0}, {"l2": 0.1}]
    lines = format_table(rows, ["l2"]).splitlines()
    assert [line.strip() for line in lines[2:]] == ["1e-05", "0.000", "0.100"]
