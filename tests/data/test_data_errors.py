import logging
import pickle

import pytest

from vlprobe.data.errors import DataFormatError, ProblemLog, skip_or_raise


def test_error_text_names_file_location_problem_and_fix() -> None:
    e = DataFormatError("data/a.txt", "line 12", "unknown split code 'xx'", "Use tr, va or te")
    assert str(e) == "data/a.txt, line 12: unknown split code 'xx'. Use tr, va or te"
    assert (e.path, e.location, e.message) == ("data/a.txt", "line 12", "unknown split code 'xx'")
    assert isinstance(e, ValueError)
    assert str(pickle.loads(pickle.dumps(e))) == str(e)  # survives DataLoader workers


def test_error_without_location() -> None:
    assert str(DataFormatError("f.h5", "", "unknown suffix", "")) == "f.h5: unknown suffix"


def test_problem_log_report_lists_first_n_and_counts() -> None:
    log = ProblemLog()
    assert log.report() == "no records skipped"
    for i in range(12):
        log.add("a.txt" if i < 10 else "b.json", f"line {i + 1}", "bad")
    text = log.report(max_listed=3)
    assert text.startswith("skipped 12 bad records (a.txt: 10, b.json: 2); first 3:")
    assert "a.txt, line 1: bad" in text and "line 4" not in text
    assert text.endswith("... and 9 more")
    assert len(log) == 12


def test_skip_or_raise() -> None:
    e = DataFormatError("a", "line 1", "bad")
    with pytest.raises(DataFormatError):
        skip_or_raise(e, True, ProblemLog())
    log = ProblemLog()
    skip_or_raise(e, False, log)
    assert [str(p) for p in log.problems] == ["a, line 1: bad"]


def test_lenient_without_log_still_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        skip_or_raise(DataFormatError("a", "line 2", "bad"), False, None)
    assert "skipped: a, line 2: bad" in caplog.text
