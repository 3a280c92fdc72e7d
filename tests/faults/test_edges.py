"""Edges that gave a silently wrong result or lost data (issue 24): each test fails on the
code before its fix."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import test_bad_input
import torch

from probes.run import run
from vlprobe.extraction.fingerprint import data_files, differences
from vlprobe.extraction.pipeline import fingerprint
from vlprobe.reporting.aggregate import load_runs
from vlprobe.reporting.run_results import read_run_results
from vlprobe.synthetic.stamp import OWNER, STAMP, build_demo

TINY = {"scenes": 4, "seed": 0, "feature_dim": 8, "senteval_per_task": 10, "render_images": False}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- 1. the demo owns its own
def _users_folder(root: Path) -> Path:
    """A user's data folder that happens to hold a file named DONE."""
    (root / "sub").mkdir(parents=True)
    (root / "flickr30k_entities").mkdir()
    (root / "annotations.json").write_text('{"mine": true}\n')
    (root / "sub" / "notes.txt").write_text("keep me\n")
    (root / "flickr30k_entities" / "train.txt").write_text("1000092795\n")
    (root / STAMP).write_text("complete\n")
    return root


def test_a_done_file_does_not_make_a_folder_the_demos(tmp_path: Path) -> None:
    root = _users_folder(tmp_path / "data")
    before = _snapshot(root)
    with pytest.raises(ValueError, match=r"did not write .*add data=real") as err:
        build_demo(root, **TINY)
    assert "\n" not in str(err.value)
    assert _snapshot(root) == before and not (root / OWNER).exists()


def test_make_demo_data_refuses_a_folder_it_did_not_write(tmp_path: Path, capsys) -> None:
    from vlprobe.cli import main as vlprobe

    root = _users_folder(tmp_path / "data")
    before = _snapshot(root)
    assert vlprobe(["make-demo-data", "--out", str(root), "--scenes", "4", "--no-images"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"vlprobe make-demo-data: error: --out={root} holds files the demo")
    assert _snapshot(root) == before


def test_files_added_to_a_demo_folder_are_not_deleted(tmp_path: Path) -> None:
    """The manifest lists what the demo wrote: a user's file beside it (or inside one of its
    folders) stops the rebuild instead of going with it."""
    root = tmp_path / "demo"
    build_demo(root, **TINY)
    (root / "senteval" / "my_task.txt").write_text("tr\tA\tmine .\n")
    with pytest.raises(ValueError, match="my_task.txt"):
        build_demo(root, **{**TINY, "scenes": 5})
    assert (root / "senteval" / "my_task.txt").exists()
    (root / "senteval" / "my_task.txt").unlink()
    (root / "annotations.json").write_text("{}\n")
    with pytest.raises(ValueError, match="annotations.json"):
        build_demo(root, **{**TINY, "scenes": 5}, force=True)
    assert (root / "annotations.json").exists()


# ---------------------------------------------------------------- train_probe.py in-process
ROOT = Path(__file__).resolve().parents[2]
train_probe = test_bad_input.train_probe  # the fixture: train_probe.py loaded in-process


@pytest.fixture
def cli(train_probe, monkeypatch, capsys) -> Callable[..., tuple[int, list[str]]]:
    """``train_probe.py ARGS`` in this process: its exit code and stderr's lines."""

    def run(*args: str) -> tuple[int, list[str]]:
        monkeypatch.setattr(sys, "argv", ["train_probe.py", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            train_probe.cli()
        return exit_info.value.code, capsys.readouterr().err.strip().splitlines()

    return run


# ---------------------------------------------------------------- 2. demo numbers say so
def test_demo_and_real_runs_are_marked(compose_cfg, planted_cache: Path, capsys) -> None:
    """``data`` in every row and the header of results.json, in the title and the tags."""
    base = [f"data.cache={planted_cache}", "logger=none", "debug=fast", "task.inputs=[attention]"]
    for extra, kind in (([], "demo"), (["data=real", f"data.root={planted_cache.parent}"], "real")):
        cfg = compose_cfg([*base, *extra])
        run(cfg)
        results = read_run_results(Path(cfg.paths.output_dir) / "results.json")
        assert results.data == kind and results.rows
        assert all(row["data"] == kind for row in results.rows)
        title = next(ln for ln in capsys.readouterr().out.splitlines() if "| seed 0" in ln)
        assert title.endswith(f"| {kind} data | DEBUG RUN (one batch per stage: not results)")
        assert kind in cfg.tags  # the W&B run's tags, when a W&B logger is configured


def test_demo_built_at_a_new_data_root_is_marked_demo(compose_cfg, tmp_path: Path) -> None:
    """``data.root=/new/folder`` without data=real: the demo is built there and its rows say so."""
    root = tmp_path / "my-data"
    cfg = compose_cfg(
        [
            f"data.root={root}",
            "data.scenes=12",
            "data.feature_dim=16",
            "model=text",
            "task=linguistic/past_present",
            "logger=none",
            "debug=fast",
            "probing.layers=[0]",
        ]
    )
    run(cfg)
    rows = read_run_results(Path(cfg.paths.output_dir) / "results.json").rows
    assert (root / OWNER).exists() and rows and {r["data"] for r in rows} == {"demo"}


# ---------------------------------------------------------------- 3. a missing real root
def test_missing_real_data_root_is_named_first(cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    started = time.perf_counter()
    code, lines = cli("data=real", f"data.root={missing}", "logger=none")
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"train_probe: error: data.root={missing} does not exist")
    assert "damaged cache" not in lines[0]
    assert not list(tmp_path.rglob("*.lock")) and not missing.exists()
    assert time.perf_counter() - started < 30  # before any model or data is loaded


# ---------------------------------------------------------------- 5. results.json last
def _failing_step(monkeypatch: pytest.MonkeyPatch) -> None:
    import probes.run

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", "results.csv")

    monkeypatch.setattr(probes.run, "write_csv", fail)


def test_a_run_failing_after_training_is_not_a_finished_result(
    compose_cfg, planted_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """results.csv cannot be written: the run fails, results.json says so (status and error,
    rows kept), and ``vlprobe report`` skips the run instead of reporting it."""
    _failing_step(monkeypatch)
    cfg = compose_cfg(
        [f"data.cache={planted_cache}", "logger=none", "trainer=cpu", "trainer.max_epochs=1"]
        + ["task.subtasks=[identification]", "task.inputs=[embedding]"]
    )
    with pytest.raises(OSError, match="No space left"):
        run(cfg)
    out = Path(cfg.paths.output_dir)
    results = read_run_results(out / "results.json")
    assert results.status == "failed" and "No space left on device" in results.error
    assert results.rows and not list(out.glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match=r"1 skipped: failed: OSError"):
        load_runs([out])


def test_a_finished_run_says_finished(compose_cfg, planted_cache: Path) -> None:
    cfg = compose_cfg(
        [f"data.cache={planted_cache}", "logger=none", "trainer=cpu", "trainer.max_epochs=1"]
        + ["task.subtasks=[identification]", "task.inputs=[embedding]"]
    )
    run(cfg)
    out = Path(cfg.paths.output_dir)
    raw = json.loads((out / "results.json").read_text())
    assert raw["status"] == "finished" and raw["error"] is None and raw["data"] == "demo"
    (loaded,), skipped = load_runs([out])
    assert not skipped and loaded.rows == raw["rows"]


# ---------------------------------------------------------------- 4. symlinked data folders
def test_a_symlinked_data_folder_is_in_the_fingerprint(
    builder_cfg, fault_demo: Path, tmp_path: Path
) -> None:
    """``Annotations/`` linked from elsewhere: an edit there makes the cache stale."""
    root = tmp_path / "value-mini"
    shutil.copytree(fault_demo, root)
    annotations = root / "flickr30k" / "Annotations"
    elsewhere = tmp_path / "big-disk" / "Annotations"
    elsewhere.parent.mkdir()
    shutil.move(annotations, elsewhere)
    annotations.symlink_to(elsewhere, target_is_directory=True)
    cfg = builder_cfg("flickr30k", root=root)
    before = fingerprint(cfg, "flickr30k")
    edited = sorted(elsewhere.glob("*.xml"))[0]
    edited.write_text(edited.read_text().replace("<xmin>", "<xmin>1"))
    changes = differences(before, fingerprint(cfg, "flickr30k"))
    name = root.resolve() / "flickr30k" / "Annotations" / edited.name
    assert len(changes) == 1 and changes[0].startswith(f"input {name} changed (size")


def test_a_symlink_loop_in_a_data_folder_ends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.txt").write_text("a\n")
    (data / "sub" / "back").symlink_to(data, target_is_directory=True)
    assert data_files(data) == [data / "sub" / "a.txt"]


# ---------------------------------------------------------------- 6. UNITER head count
def test_a_uniter_checkpoint_of_another_size_needs_its_config(tmp_path: Path) -> None:
    """4 heads of 16 (hidden 64) ran as 1 head of 64: without ``model.config`` it is refused;
    with it, it loads with its 4 heads."""
    from vlprobe.models.uniter import CheckpointError
    from vlprobe.testing.models import build_adapter, tiny_config

    config = {**tiny_config("uniter", feature_dim=16), "hidden_size": 64}
    config.update(num_attention_heads=4, intermediate_size=128)
    trained = build_adapter("uniter", config=config, seed=0)
    ckpt = tmp_path / "uniter-4heads.pt"
    torch.save({f"uniter.{k}": v for k, v in trained.model.state_dict().items()}, ckpt)
    with pytest.raises(CheckpointError, match=r"neither UNITER-base.*pass model.config=") as err:
        build_adapter("uniter", checkpoint=str(ckpt))
    assert "\n" not in str(err.value) and str(ckpt) in str(err.value)
    config_json = tmp_path / "uniter-4heads.json"
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
    keys += ("intermediate_size", "max_position_embeddings", "type_vocab_size")
    config_json.write_text(json.dumps({k: getattr(trained.config, k) for k in keys}))
    loaded = build_adapter("uniter", checkpoint=str(ckpt), config=str(config_json))
    assert (loaded.num_heads, loaded.hidden_size) == (4, 64)


# ---------------------------------------------------------------- 7. say what is wrong
@pytest.mark.parametrize("kind", ["a text file", "a folder"])
def test_a_cache_that_is_not_one_is_named_for_what_it_is(cli, tmp_path: Path, kind: str) -> None:
    """Not "corrupted, delete it": README.md or a folder is no cache at all."""
    if kind == "a folder":
        path, said = tmp_path / "caches", "is a folder, not a cache"
        path.mkdir()
    else:
        path, said = tmp_path / "README.md", "is not an HDF5 file, so not a vlprobe cache"
        path.write_text("# my notes\n")
    code, (line,) = cli(f"data.cache={path}", "logger=none")
    assert code == 2 and line.startswith(f"train_probe: error: {path} {said}")
    assert "corrupted" not in line and "Delete" not in line and "damaged" not in line
    assert path.exists()


def test_an_output_write_error_is_not_blamed_on_the_cache(
    cli, planted_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import probes.run

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(probes.run, "write_csv", full)
    code, lines = cli(
        f"data.cache={planted_cache}",
        "logger=none",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "task.subtasks=[identification]",
        "task.inputs=[embedding]",
    )
    (run_dir,) = {p.parent for p in (tmp_path / "logs").rglob("results.json")}
    assert code == 2 and lines[-1] == (
        "train_probe: error: [Errno 28] No space left on device "
        f"(a file of the run's folder {run_dir})"
    )
    assert read_run_results(run_dir / "results.json").status == "failed"


def test_a_skip_hint_names_the_config_key(builder_cfg, fault_demo: Path, tmp_path: Path) -> None:
    """An image without features: the hint says data.strict=false, not strict=False."""
    from vlprobe.data.errors import DataFormatError
    from vlprobe.extraction.pipeline import load_examples

    root = tmp_path / "value-mini"
    shutil.copytree(fault_demo, root)
    features = root / "features" / "butd.tsv"
    features.write_text("".join(features.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(DataFormatError, match="set data.strict=false to skip") as err:
        load_examples(builder_cfg("flickr30k", root=root), "flickr30k")
    assert "strict=False" not in str(err.value)


# ---------------------------------------------------------------- 8. SentEval files
def test_a_non_utf8_senteval_line_is_named(builder_cfg, fault_demo: Path, tmp_path: Path) -> None:
    from vlprobe.data.errors import DataFormatError
    from vlprobe.extraction.pipeline import load_examples

    root = tmp_path / "value-mini"
    shutil.copytree(fault_demo, root)
    file = root / "senteval" / "past_present.txt"
    lines = file.read_bytes().splitlines(keepends=True)
    lines[2] = b"tr\tPAST\tthe caf\xe9 closed .\n"  # latin-1
    file.write_bytes(b"".join(lines))
    cfg = builder_cfg("senteval/past_present", root=root)
    with pytest.raises(DataFormatError) as err:
        load_examples(cfg, "senteval/past_present")
    assert str(err.value).startswith(
        f"{file}, line 3: not UTF-8 text (byte 0xe9 at column 16). Save the file as UTF-8"
    )
    cfg.data.strict = False  # skipped and counted, the other lines read
    examples, _ = load_examples(cfg, "senteval/past_present")
    assert len(examples) == len(lines) - 1


@pytest.mark.parametrize("content", [b"", b"\n\n", b"tr\tpres\tbad label .\n"])
def test_an_empty_senteval_file_is_named(tmp_path: Path, content: bytes) -> None:
    from vlprobe.data.errors import DataFormatError, ProblemLog
    from vlprobe.data.senteval import read_senteval

    file = tmp_path / "past_present.txt"
    file.write_bytes(content)
    with pytest.raises(DataFormatError, match=r"holds no example") as err:
        read_senteval(file, strict=False, problems=ProblemLog())
    assert str(err.value).startswith(f"{file}: holds no example")


# ---------------------------------------------------------------- 9. the next ones
def _copy_demo(fault_demo: Path, tmp_path: Path) -> Path:
    root = tmp_path / "value-mini"
    shutil.copytree(fault_demo, root)
    return root


def _with_bom(path: Path) -> None:
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def test_a_byte_order_mark_loses_no_line(builder_cfg, fault_demo: Path, tmp_path: Path) -> None:
    """Files saved by a Windows editor (UTF-8 with a BOM) read like the same files without:
    the BOM used to glue onto the first image id (``data.strict=false`` then dropped that
    image silently) or the first SentEval split code (an error naming an invisible char)."""
    from vlprobe.extraction.pipeline import load_examples

    root = _copy_demo(fault_demo, tmp_path)
    expected = {}
    for dataset in ("flickr30k", "visual_genome", "senteval/past_present"):
        cfg = builder_cfg(dataset, root=root)
        cfg.data.strict = False
        expected[dataset] = [e.example_id for e in load_examples(cfg, dataset)[0]]
    for split in ("train", "val", "test"):
        _with_bom(root / "flickr30k" / f"{split}.txt")
    first = (root / "flickr30k" / "train.txt").read_text(encoding="utf-8-sig").split()[0]
    _with_bom(root / "flickr30k" / "Sentences" / f"{first}.txt")
    for name in ("objects.json", "relationships.json", "image_data.json"):
        if (root / "visual_genome" / name).exists():
            _with_bom(root / "visual_genome" / name)
    _with_bom(root / "senteval" / "past_present.txt")
    for dataset, ids in expected.items():
        cfg = builder_cfg(dataset, root=root)
        cfg.data.strict = False
        assert [e.example_id for e in load_examples(cfg, dataset)[0]] == ids, dataset


def test_non_utf8_flickr_and_vg_files_are_named(
    builder_cfg, fault_demo: Path, tmp_path: Path
) -> None:
    from vlprobe.data.errors import DataFormatError
    from vlprobe.extraction.pipeline import load_examples

    root = _copy_demo(fault_demo, tmp_path)
    first = (root / "flickr30k" / "train.txt").read_text().split()[0]
    sentences = root / "flickr30k" / "Sentences" / f"{first}.txt"
    good = sentences.read_bytes()
    sentences.write_bytes(good + b"A caf\xe9 .\n")
    with pytest.raises(DataFormatError) as err:
        load_examples(builder_cfg("flickr30k", root=root), "flickr30k")
    assert str(err.value).startswith(f"{sentences}, line ") and "not UTF-8 text" in str(err.value)
    sentences.write_bytes(good)
    relationships = root / "visual_genome" / "relationships.json"
    relationships.write_bytes(relationships.read_bytes().replace(b'"', b'"\xe9', 1))
    with pytest.raises(DataFormatError) as err:
        load_examples(builder_cfg("visual_genome", root=root), "visual_genome")
    assert str(err.value).startswith(
        f"{relationships}, line 1, column 4: not UTF-8 text (byte 0xe9)"
    )


def test_a_tilde_path_is_refused_not_built_in_a_folder_named_tilde(
    compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data.root='~/vl'`` (quoted, or ``root: ~/vl`` in an experiment file): the demo
    went into ``./~/vl``."""
    from vlprobe.extraction.pipeline import ensure_cache

    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg(["data.root='~/vl'", "data.scenes=4", "data.feature_dim=8", "model=text"])
    with pytest.raises(ValueError) as err:
        ensure_cache(cfg, "senteval/past_present")
    assert str(err.value).startswith("data.root=~/vl: '~' is not expanded in a config value")
    assert "data.root=$HOME/vl" in str(err.value)
    assert not (tmp_path / "~").exists()


def test_a_cache_of_another_model_is_not_labelled_with_the_default(
    cli, planted_cache: Path, tmp_path: Path
) -> None:
    """``data.cache=<lxmert's cache>`` without ``model=lxmert``: the rows, title and W&B named
    visualbert-minilm (the default model) for lxmert's numbers."""
    import h5py

    cache = tmp_path / "lxmert.h5"
    shutil.copy(planted_cache, cache)
    with h5py.File(cache, "r+") as f:
        f.attrs["model_name"] = "lxmert"
    code, lines = cli(f"data.cache={cache}", "logger=none")
    assert code == 2 and lines == [
        f"train_probe: error: data.cache={cache} holds features of lxmert, but the run's model "
        "is visualbert-minilm: add model=lxmert (the model of the cache) so that the results "
        "are labelled with the model they come from"
    ]
    assert not list(tmp_path.rglob("results.json"))


@pytest.mark.parametrize("kind", ["text", "hdf5"])
def test_extract_does_not_replace_a_file_that_is_no_cache(
    tmp_path: Path, capsys, kind: str
) -> None:
    """``vlprobe extract out=notes.txt`` replaced the user's file with a cache."""
    import h5py

    from vlprobe.cli import main as vlprobe

    out = tmp_path / ("notes.txt" if kind == "text" else "mine.h5")
    if kind == "text":
        out.write_text("my notes\n")
    else:
        with h5py.File(out, "w") as f:
            f["x"] = [1, 2, 3]
    before = out.read_bytes()
    args = ["extract", f"out={out}", "dataset=senteval/past_present", "model=text"]
    assert vlprobe([*args, f"data.root={tmp_path / 'demo'}", "data.scenes=4"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"vlprobe extract: error: out={out} ") and "would replace it" in line
    assert out.read_bytes() == before and not (tmp_path / "demo").exists()


_RUN_DIR = """
import sys, time
from pathlib import Path
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from vlprobe.config import config_dir, register_resolvers
register_resolvers()
with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
    cfg = compose("train_probe", return_hydra_config=True)
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.001)
print(OmegaConf.select(cfg, "hydra.run.dir"))
"""


def test_two_runs_started_together_get_two_run_folders(tmp_path: Path) -> None:
    """Two jobs started in the same second (two terminals, a SLURM array) shared one run
    folder: the second's results.json and .hydra/ replaced the first's."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN_DIR, str(tmp_path / f"ready{i}"), str(tmp_path / "go")],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        time.sleep(0.01)
    time.sleep(math.ceil(time.time()) - time.time() + 0.05)  # early in a second: both in it
    (tmp_path / "go").touch()
    folders = [job.communicate(timeout=120)[0].strip() for job in jobs]
    assert all(job.returncode == 0 for job in jobs)
    assert folders[0] != folders[1], folders


def test_a_distributed_runs_rank_copy_is_not_a_second_run(
    compose_cfg, planted_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 1 of a DDP run keeps its copy of the results under ``.rank1/``: ``vlprobe report``
    took it for a second run (no config: of unknown model and seed)."""
    from pytorch_lightning.utilities import rank_zero_only

    cfg = compose_cfg(
        [f"data.cache={planted_cache}", "logger=none", "trainer=cpu", "trainer.max_epochs=1"]
        + ["task.subtasks=[identification]", "task.inputs=[embedding]"]
    )
    (Path(cfg.paths.output_dir) / ".hydra").mkdir(parents=True)
    (Path(cfg.paths.output_dir) / ".hydra" / "config.yaml").write_text("seed: 0\n")
    run(cfg)
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # what rank 1 of the same job writes
    run(cfg)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    out = Path(cfg.paths.output_dir)
    assert (out / ".rank1" / "results.json").exists()
    runs, skipped = load_runs([out.parent])
    assert [r.path for r in runs] == [out.resolve()]
    assert [s.path.name for s in skipped] == [".rank1"]


def test_a_file_browsers_litter_does_not_disown_the_demo(tmp_path: Path) -> None:
    """The manifest is strict, but a .DS_Store (Finder) is no user data: the demo folder, and
    a new folder opened in a file browser, are still the demo builder's."""
    new = tmp_path / "new"
    new.mkdir()
    (new / ".DS_Store").write_bytes(b"\0")
    assert build_demo(new, **TINY)
    (new / "senteval" / ".DS_Store").write_bytes(b"\0")
    assert build_demo(new, **{**TINY, "scenes": 5})
