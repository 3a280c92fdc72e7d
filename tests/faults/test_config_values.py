"""Config values checked by type and range: one line naming the key, exit 2, nothing run.

Each case below was silently reinterpreted, accepted, hung or ended in a traceback before
``vlprobe.settings_check`` (``probing.layers=[0.5,3.9]`` probed layers 0 and 3, ``012``
layers 0, 1 and 2, ``loader.batch_size=-4`` hung, ``trainer=gpu`` ran on the CPU).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from vlprobe.cli import main as vlprobe
from vlprobe.preflight import group_options
from vlprobe.settings_check import check_values
from vlprobe.testing.planted import write_planted_relation_cache
from vlprobe.train_probe import cli as train_probe


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config-values") / "p.h5"
    return write_planted_relation_cache(path, num_images=20, num_layers=3)


@pytest.fixture
def refused(good_cache: Path, capsys, tmp_path: Path, monkeypatch) -> Callable[..., str]:
    """``train_probe ARGS`` on a good cache: asserts exit 2, one stderr line, no results and
    no W&B run; returns the line."""

    def run(*args: str) -> str:
        monkeypatch.setattr(sys, "argv", ["train_probe.py"])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            train_probe([f"data.cache={good_cache}", *args])
        assert exit_info.value.code == 2
        assert not list(tmp_path.rglob("results.json")) and not list(tmp_path.rglob("*run-*"))
        (line,) = capsys.readouterr().err.strip().splitlines()
        return line

    return run


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine, as far as torch can tell, has no GPU (whatever it really has)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


ERROR = "train_probe: error: "

CASES = {
    # (args, the line's start)
    "fractional layers": (
        ["probing.layers=[0.5,3.9]"],
        "probing.layers=[0.5, 3.9]: layers must be whole numbers >= 0, in a list, "
        "e.g. probing.layers=[0,3]",
    ),
    "layers as digits": (
        ["probing.layers=012"],
        "probing.layers=012: layers must be whole numbers >= 0, in a list",
    ),
    "one layer without brackets": (
        ["probing.layers=3"],
        "probing.layers=3: layers must be whole numbers >= 0, in a list",
    ),
    "layers as a word": (
        ["probing.layers=abc"],
        "probing.layers=abc: layers must be whole numbers >= 0, in a list",
    ),
    "negative layer": (
        ["probing.layers=[-1]"],
        "probing.layers=[-1]: layers must be whole numbers >= 0, in a list",
    ),
    "no hidden units": (
        ["probe=mlp", "probe.hidden_dim=0"],
        "probe.hidden_dim=0: the hidden width must be >= 1, e.g. probe.hidden_dim=256",
    ),
    "negative seed": (["seed=-1"], "seed=-1: the seed must be >= 0, e.g. seed=1"),
    "seed beyond numpy's": (["seed=4294967296"], "seed=4294967296: the seed must be <= "),
    "fractional seeds": (["seeds=[1,2.5]"], "seeds=[1, 2.5]: seeds must be whole numbers"),
    "epochs as a word": (
        ["trainer.max_epochs=abc"],
        "trainer.max_epochs=abc: the epoch limit must be a whole number, "
        "e.g. trainer.max_epochs=30",
    ),
    "negative batch size": (
        ["loader.batch_size=-4"],
        "loader.batch_size=-4: the batch size must be >= 1, e.g. loader.batch_size=256",
    ),
    "dropout of one": (
        ["probe=mlp", "probe.dropout=1.0"],
        "probe.dropout=1.0: the dropout rate must be < 1",
    ),
    "learning rate nan": (["probe.lr=nan"], "probe.lr=nan: the learning rate must be a finite"),
    "control as a word": (
        ["probing.control=maybe"],
        "probing.control=maybe: probing.control must be true or false",
    ),
    "unknown MDL variant": (
        ["probing.mdl_variant=plain"],
        "probing.mdl_variant=plain: the MDL variant must be one of smoothed, voita, "
        "e.g. probing.mdl_variant=voita",
    ),
    "l2 grid of words": (
        ["probing.l2_grid=[a,b]"],
        "probing.l2_grid needs penalties >= 0, got ['a', 'b']: penalties must be numbers >= 0",
    ),
    "unknown accelerator": (
        ["trainer.accelerator=gpus"],
        "trainer.accelerator=gpus: the accelerator must be one of auto, cpu, gpu, cuda",
    ),
    "unquoted list split by the shell": (
        ["probing.layers=[0,", "3]"],
        "probing.layers=[0,: cannot be read as key=value (",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_value_is_one_line_naming_its_key(refused, case: str) -> None:
    args, start = CASES[case]
    line = refused(*args)
    assert line.startswith(ERROR + start), line


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["trainer=gpu"], "trainer.accelerator=gpu"),
        (["trainer.accelerator=cuda"], "trainer.accelerator=cuda"),
        (["model.device=cuda"], "model.device=cuda"),
    ],
)
def test_a_device_asked_for_and_absent_is_an_error(refused, no_gpu, args, key) -> None:
    """It ran on the CPU without a word (the L-BFGS path fell back): on a cluster, hours lost."""
    assert refused(*args) == (
        f"{ERROR}{key}: this machine has no {key.split('=')[1]} device (torch sees none); run "
        f"where there is one, choose {key.split('=')[0]}=cpu, or {key.split('=')[0]}=auto to "
        "use one only where present"
    )


def test_wandb_online_without_a_login_is_one_line(
    refused, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A raw wandb traceback (no API key) before; now refused before any run starts."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    line = refused("logger.wandb.offline=false")
    assert line.startswith(
        f"{ERROR}logger.wandb.offline=false: no W&B login on this machine (no WANDB_API_KEY, "
        f"no api.wandb.ai entry in {tmp_path / 'netrc'}); run `wandb login` first"
    )


def test_auto_and_good_values_pass(compose_cfg, no_gpu, good_cache: Path) -> None:
    """The shipped defaults and `auto` devices pass on a machine without a GPU; good values
    of every family pass too (the check refuses only what cannot work)."""
    for overrides in (
        [],
        ["probe=mlp", "probe.hidden_dim=8", "probe.dropout=0.0", "probing.layers=[0,2]"],
        ["probe=lowrank", "seeds=[1,2]", "probing.mdl=true", "probing.mdl_fractions=[0.5,1.0]"],
        ["trainer=cpu", "trainer.devices=auto", "debug=fast"],
        ["probing.l2_grid=[0,1]", "loader.memory_budget_mb=0.5", "probing.layers=null"],
    ):
        check_values(compose_cfg([f"data.cache={good_cache}", *overrides]))
    check_values(compose_cfg(["extraction.shards=2"], config_name="extract"))
    for group in ("experiment", "task", "model", "probe", "trainer", "data"):
        for option in group_options(group):
            if (group, option) != ("trainer", "gpu"):  # asks for a GPU by name
                check_values(compose_cfg([f"{group}={option}"]))


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["extraction.batch_size=0"], "extraction.batch_size=0: the batch size must be >= 1"),
        (["seed=1.5"], "seed=1.5: the seed must be a whole number"),
        (["extraction.shards=0"], "extraction.shards=0: the number of shards must be >= 1"),
        (["extraction.accelerator=gpu"], "extraction.accelerator=gpu: this machine has no gpu"),
        (["data.scenes=many"], "data.scenes=many: the number of demo scenes must be a whole"),
        (["extraction.batch_size=[0,"], "extraction.batch_size=[0,: cannot be read as"),
    ],
)
def test_extract_checks_the_keys_it_shares(capsys, no_gpu, tmp_path: Path, args, start) -> None:
    """``vlprobe extract`` refuses the same values, with the same line, before any data."""
    capsys.readouterr()
    assert vlprobe(["extract", *args]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"vlprobe extract: error: {start}"), line
    assert not (tmp_path / "data").exists()  # no demo data, no cache


def test_good_values_still_train(good_cache: Path, tmp_path: Path, monkeypatch) -> None:
    """The check lets a run with explicit good values through to its results."""
    monkeypatch.setattr(sys, "argv", ["train_probe.py"])
    train_probe(
        [
            f"data.cache={good_cache}",
            "logger=none",
            "trainer=cpu",
            "probing.layers=[0,2]",
            "loader.batch_size=8",
            "trainer.max_epochs=2",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
    )
    assert (tmp_path / "run" / "results.json").is_file()
