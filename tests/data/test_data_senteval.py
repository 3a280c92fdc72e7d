import pytest

from vlprobe.data.errors import DataFormatError, ProblemLog
from vlprobe.data.senteval import SENTEVAL_TASKS, read_senteval

GOOD = (
    "tr\tPRES\tShe shone her light around the space , following the glow .\n"
    "va\tPAST\tTeddy hollered , unwilling to be put off .\n"
    "\n"
    "te\tPAST\textra\tThe last field is the sentence .\r\n"
)


def test_read_senteval(write_text) -> None:
    path = write_text("past_present.txt", GOOD)
    exs = read_senteval(path)
    assert [(e.split, e.label, e.line) for e in exs] == [
        ("train", "PRES", 1),
        ("val", "PAST", 2),
        ("test", "PAST", 4),
    ]
    assert exs[1].sentence == "Teddy hollered , unwilling to be put off ."
    assert exs[2].sentence == "The last field is the sentence ."


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("xx\tPAST\tA sentence .\n", "line 3: unknown split code 'xx'. Use tr, va or te"),
        ("tr PAST A sentence .\n", "line 3: expected 3 tab-separated fields, got 1"),
        ("tr\t\tA sentence .\n", "line 3: empty label"),
    ],
)
def test_errors_name_file_and_line(write_text, bad: str, fragment: str) -> None:
    path = write_text("t.txt", "tr\tA\tone .\ntr\tB\ttwo .\n" + bad + "te\tA\tfour .\n")
    with pytest.raises(DataFormatError) as info:
        read_senteval(path)
    assert str(info.value).startswith(f"{path}, {fragment}")
    log = ProblemLog()
    assert [e.line for e in read_senteval(path, strict=False, problems=log)] == [1, 2, 4]
    assert len(log) == 1 and log.problems[0].location == "line 3"


def test_task_files() -> None:
    assert len(SENTEVAL_TASKS) == 10
    assert SENTEVAL_TASKS["past_present"] == "past_present.txt"
    assert all(f == f"{t}.txt" for t, f in SENTEVAL_TASKS.items())


def test_label_typo_is_an_error_naming_file_and_line(write_text) -> None:
    """``pres`` for ``PRES`` must not become a third class of one example."""
    path = write_text("past_present.txt", "tr\tPRES\tone .\ntr\tpres\ttwo .\nte\tPAST\tthree .\n")
    with pytest.raises(DataFormatError) as info:
        read_senteval(path)
    assert str(info.value).startswith(
        f"{path}, line 2: unknown past_present label 'pres'. Valid labels: PAST, PRES"
    )
    log = ProblemLog()
    assert [e.label for e in read_senteval(path, strict=False, problems=log)] == ["PRES", "PAST"]
    assert len(log) == 1 and log.problems[0].location == "line 2"


@pytest.mark.parametrize(
    ("task", "good", "bad"),
    [
        ("sentence_length", "5", "6"),
        ("tree_depth", "11", "l1"),
        ("top_constituents", "ADVP_,_NP_VP_.", "np_VP_."),
        ("word_content", "castle", "Castle"),
        ("odd_man_out", "C", "I"),
    ],
)
def test_every_task_declares_its_labels(write_text, task: str, good: str, bad: str) -> None:
    path = write_text(f"{task}.txt", f"tr\t{good}\tone .\n")
    assert [e.label for e in read_senteval(path)] == [good]
    path.write_text(f"tr\t{bad}\tone .\n")
    with pytest.raises(DataFormatError, match=f"unknown {task} label '{bad}'"):
        read_senteval(path)


def test_demo_labels_are_valid_labels() -> None:
    from vlprobe.data.senteval import SENTEVAL_LABELS
    from vlprobe.synthetic.senteval_grammar import TASK_LABELS

    assert set(TASK_LABELS) == set(SENTEVAL_LABELS) == set(SENTEVAL_TASKS)
    for task, labels in TASK_LABELS.items():
        assert all(label in SENTEVAL_LABELS[task] for label in labels), task
