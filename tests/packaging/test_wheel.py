"""A wheel carries the Hydra configs, and an installed (non-editable) copy runs from any folder.

Before, ``config_dir()`` was ``parents[2] / "configs"``: right in a checkout, a folder that
does not exist in site-packages, so ``pip install .`` gave a package that could not compose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: what a wheel is built from (setup.py's build step copies configs/ into the package)
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
PACKAGES = ("src", "probes", "datamodules", "configs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (the build leaves build/ in its tree)."""
    tree = tmp_path_factory.mktemp("tree")
    for name in SOURCES:
        shutil.copy(ROOT / name, tree / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(tree),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
    )
    (path,) = out.glob("vlprobe-*.whl")
    return path


def test_the_wheel_holds_every_config(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        shipped = {
            n.removeprefix("vlprobe/configs/")
            for n in zf.namelist()
            if n.startswith("vlprobe/configs/")
        }
        assert (
            zf.read("vlprobe/configs/train_probe.yaml")
            == (ROOT / "configs" / "train_probe.yaml").read_bytes()
        )
    expected = {str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml")}
    assert shipped == expected


def test_an_installed_wheel_composes_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    """Installed with ``pip install --target`` (not editable): its own configs, the Hydra app
    behind ``vlprobe train`` composes the main job, from a folder with no checkout in sight."""
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import vlprobe, vlprobe.config as c\n"
        "from hydra import compose, initialize_config_dir\n"
        "c.register_resolvers()\n"
        "print(vlprobe.__file__)\n"
        "print(c.config_dir())\n"
        "with initialize_config_dir(config_dir=str(c.config_dir()), version_base='1.3'):\n"
        "    cfg = compose('train_probe', overrides=['task=visual_relation', 'probe=mlp'])\n"
        "print(cfg.task.name, cfg.probe.hidden_dim)\n"
        "from vlprobe.cli import main\n"
        "main(['train', '--cfg', 'job', 'task=fusion_degree', 'logger=csv'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    package, configs, composed, *job = done.stdout.splitlines()
    assert Path(package).is_relative_to(site)
    assert Path(configs) == site / "vlprobe" / "configs"
    assert composed == "visual_relation 256"
    assert "  name: fusion_degree" in job  # Hydra's --cfg job: the task group from the wheel
    assert not (elsewhere / "logs").exists()  # --cfg job prints, runs nothing
