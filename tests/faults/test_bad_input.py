"""Bad input: one line naming the file or key and the fix, exit code 2, before any logger run,
nothing that looks finished (no results.json, no W&B run)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from vlprobe.cli import main as vlprobe
from vlprobe.preflight import BadInput, check_writable
from vlprobe.testing.planted import write_planted_relation_cache

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def train_probe():
    spec = importlib.util.spec_from_file_location("train_probe", ROOT / "train_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Hydra finds configs/ beside the script only for a task function of __main__
    module.main.__wrapped__.__module__ = "__main__"
    return module


@pytest.fixture
def run_cli(train_probe, monkeypatch, capsys, tmp_path: Path) -> Callable[..., list[str]]:
    """``train_probe.py ARGS`` in this process; asserts exit 2 and returns stderr's lines."""

    def run(*args: str) -> list[str]:
        monkeypatch.setattr(sys, "argv", ["train_probe.py", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            train_probe.cli()
        assert exit_info.value.code == 2
        assert not list(tmp_path.rglob("results.json")) and not list(tmp_path.rglob("*run-*"))
        return capsys.readouterr().err.strip().splitlines()

    return run


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad-input") / "p.h5"
    return write_planted_relation_cache(path, num_images=20, num_layers=3)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


def test_unknown_task_lists_every_task(run_cli) -> None:
    (line,) = run_cli("task=nope")
    assert line.startswith("train_probe: error: task=nope: no such option; valid: ")
    assert "visual_relation" in line and "linguistic/all" in line
    assert "linguistic/past_present" in line


def test_unknown_key_lists_valid_keys(run_cli) -> None:
    (line,) = run_cli("probe.learning_rate=0.1")
    assert line == (
        "train_probe: error: unknown config key 'probe.learning_rate'; valid keys under probe: "
        "_partial_, _target_, family, lr, weight_decay (to add a new key write "
        "+probe.learning_rate=...)"
    )


def test_unknown_sweep_option(run_cli) -> None:
    (line,) = run_cli("-m", "model=visualbert_minilm,nope")
    assert line.startswith("train_probe: error: model=nope: no such option; valid: ")


def test_empty_split_by_setting(run_cli) -> None:
    (line,) = run_cli("data.vg_split=[0.9,0.1,0.0]", "data.scenes=4")
    assert line.startswith("train_probe: error: data.vg_split=[0.9, 0.1, 0.0]: give train, val")


def test_empty_split_in_cache(run_cli, good_cache: Path, tmp_path: Path) -> None:
    path = _copy(good_cache, tmp_path / "c.h5")
    with h5py.File(path, "r+") as f:
        split = f["examples/split"][()]
        f["examples/split"][...] = np.where(split == 2, 1, split)  # no test examples
    (line,) = run_cli(f"data.cache={path}")
    assert line == (
        f"train_probe: error: the test split of {path} is empty: every split needs examples: "
        "check the split lists it was built from"
    )


def test_layers_out_of_range(run_cli, good_cache: Path) -> None:
    (line,) = run_cli(f"data.cache={good_cache}", "probing.layers=[0,99]")
    assert line.startswith(
        f"train_probe: error: probing.layers=[0, 99]: {good_cache} has hidden layers 0-3 (planted)"
    )


def test_the_config_is_composed_once(run_cli, good_cache: Path, monkeypatch) -> None:
    """The checks read the config Hydra composes for the app: none composes its own."""
    import hydra

    calls, compose = [], hydra.compose
    monkeypatch.setattr(hydra, "compose", lambda *a, **kw: calls.append(a) or compose(*a, **kw))
    run_cli(f"data.cache={good_cache}", "probing.layers=[0,99]")  # refused after composing
    assert calls == []


def test_read_only_log_folder_exits_before_the_run_folder(
    run_cli, monkeypatch, tmp_path: Path
) -> None:
    """Checked on the composed config before Hydra makes the run folder inside it."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    (line,) = run_cli(f"paths.log_dir={locked}/logs")
    assert line.startswith(f"train_probe: error: paths.log_dir={locked}/logs: {locked} is read")
    assert not (locked / "logs").exists()


@pytest.mark.parametrize("seed", ["abc", "1.5"])
def test_a_seed_that_is_not_a_whole_number(run_cli, good_cache: Path, seed: str) -> None:
    """``seed=1.5`` was silently seed 1 (the cache of seed 1, random weights of seed 1)."""
    (line,) = run_cli(f"data.cache={good_cache}", f"seed={seed}")
    assert line == f"train_probe: error: seed={seed}: the seed must be a whole number, e.g. seed=1"


@pytest.mark.parametrize("grid", ["[]", "[-1]"])
def test_bad_l2_grid_is_one_line(run_cli, good_cache: Path, grid: str) -> None:
    """Refused by a constructor built from config (``Probing``), not by the preflight."""
    (line,) = run_cli(f"data.cache={good_cache}", f"probing.l2_grid={grid}")
    assert line.startswith("train_probe: error: probing.l2_grid needs penalties >= 0, got ")


def test_truncated_cache(run_cli, good_cache: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    path.write_bytes(good_cache.read_bytes()[: good_cache.stat().st_size // 2])
    (line,) = run_cli(f"data.cache={path}")
    assert line.startswith(f"train_probe: error: {path} cannot be read as HDF5 (truncated")
    assert vlprobe(["verify", str(path)]) == 1


def test_cache_with_a_dataset_deleted(run_cli, good_cache: Path, tmp_path: Path) -> None:
    path = _copy(good_cache, tmp_path / "d.h5")
    with h5py.File(path, "r+") as f:
        del f["units/region/category"]
    (line,) = run_cli(f"data.cache={path}")
    assert line.startswith(
        f"train_probe: error: {path} is broken: dataset units/region/category is missing "
        "(region group). Delete it"
    )
    assert vlprobe(["inspect", str(path)]) == 2
    assert vlprobe(["verify", str(path)]) == 1


def test_read_only_folder_is_named(monkeypatch, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    with pytest.raises(BadInput, match=rf"paths.log_dir={locked}/logs: {locked} is read-only"):
        check_writable(locked / "logs", "paths.log_dir")
    (tmp_path / "file").write_text("")
    with pytest.raises(BadInput, match="is a file, not a folder"):
        check_writable(tmp_path / "file" / "logs", "paths.log_dir")


def test_unwritable_cache_folder_is_one_line(run_cli, monkeypatch) -> None:
    """A cache folder that cannot be written fails when the cache is built, before loggers."""
    import vlprobe.extraction.pipeline as pipeline

    def refuse(path, what=None):
        raise PermissionError(13, "Permission denied", f"{path}.lock")

    monkeypatch.setattr(pipeline, "exclusive_lock", refuse)
    (line,) = run_cli("data.scenes=4", "data.feature_dim=8", "logger=none")
    assert line.startswith("train_probe: error: [Errno 13] Permission denied: ")
    assert line.endswith(".h5.lock': point VLPROBE_ROOT or paths.* at a writable folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_root_folder(run_cli, tmp_path: Path, monkeypatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    monkeypatch.setenv("VLPROBE_ROOT", str(locked))
    (line,) = run_cli("task=visual_relation")
    assert f"{locked} is read-only" in line


def test_verify_passes_a_whole_cache_and_names_corruption(
    good_cache: Path, tmp_path: Path, capsys
) -> None:
    assert vlprobe(["verify", str(good_cache)]) == 0
    path = _copy(good_cache, tmp_path / "x.h5")
    with h5py.File(path, "r") as f:
        offset = f["units/region/embedding"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:  # flip bytes inside one chunk of activations
        fh.seek(offset + 16)
        fh.write(b"\xff" * 8)
    capsys.readouterr()
    assert vlprobe(["verify", str(path)]) == 1
    err = capsys.readouterr().err
    assert "units/region/embedding: cannot be read back" in err and "BROKEN" in err


def test_verify_names_inconsistent_offsets(good_cache: Path, tmp_path: Path, capsys) -> None:
    path = _copy(good_cache, tmp_path / "o.h5")
    with h5py.File(path, "r+") as f:
        offsets = f["examples/token_offset"]
        offsets[3] = offsets[3] + 1  # still ends where the tokens end: only values disagree
    capsys.readouterr()
    assert vlprobe(["verify", str(path)]) == 1
    assert "token_offset disagrees with examples/n_text + n_image" in capsys.readouterr().err
