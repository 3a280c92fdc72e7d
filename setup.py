"""Build step beyond pyproject.toml: ship the top-level ``configs/`` inside the package.

Users keep ``configs/`` at the repository's top (``train_probe.py`` reads it there); a wheel
carries a copy as ``vlprobe/configs`` so that ``pip install .`` (not editable) works from any
folder (``vlprobe.config.config_dir`` looks there first). An editable install reads the
checkout's ``configs/`` directly, so nothing is copied into the source tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = Path(__file__).resolve().parent / "configs"


class BuildPyWithConfigs(build_py):
    """``build_py`` that also copies ``configs/*.yaml`` to ``<build>/vlprobe/configs``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "vlprobe" / "configs"
        shutil.rmtree(target, ignore_errors=True)  # no stale option from an earlier build
        shutil.copytree(CONFIGS, target, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
