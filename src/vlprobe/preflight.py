"""Bad input caught before anything runs: one line naming the key or file and the fix.

:func:`check_command_line` runs before Hydra composes the job (an unknown group option, an
unknown key, a log folder that cannot be written); :func:`check_run_inputs` runs once the cache is
open and before any logger starts (layers the model does not have, an empty split). Both raise
:class:`BadInput`, which ``train_probe.py`` and ``vlprobe`` print as one line with exit code 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vlprobe.config import config_dir


class BadInput(ValueError):
    """A setting or path the user gave that cannot work; the message says which and the fix."""


_HYDRA_FLAGS_CHECKED = {"-m", "--multirun"}


def group_options(group: str) -> list[str]:
    """Every option of config group ``group``, nested ones as ``sub/name`` (linguistic/all)."""
    root = config_dir() / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def _groups() -> set[str]:
    return {p.name for p in config_dir().iterdir() if p.is_dir()} - {"hydra"}


def seed_of(cfg: DictConfig) -> int:
    """``cfg.seed`` as a whole number; anything else is refused (``seed=1.5`` was seed 1)."""
    seed = cfg.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadInput(f"seed={seed}: the seed must be a whole number, e.g. seed=1")
    return seed


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: str | os.PathLike[str], key: str) -> None:
    """``path`` is, or can be created as, a folder this process may write into."""
    existing = _nearest_existing(Path(path).absolute())
    if not existing.is_dir():
        raise BadInput(f"{key}={path}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInput(
            f"{key}={path}: {existing} is read-only; point it at a writable folder (or set "
            "VLPROBE_ROOT / paths.root_dir=<writable folder>)"
        )


def _key_problem(cfg: dict[str, Any], key: str) -> str | None:
    node: Any = cfg
    for depth, part in enumerate(key.split(".")):
        if not isinstance(node, dict):
            return None  # inside a list or a value: Hydra checks the rest
        if part not in node:
            where = ".".join(key.split(".")[:depth]) or "the top level"
            valid = ", ".join(sorted(str(k) for k in node)) or "(none)"
            return (
                f"unknown config key '{key}'; valid keys under {where}: {valid} "
                f"(to add a new key write +{key}=...)"
            )
        node = node[part]
    return None


def parse_overrides(args: list[str]) -> list[Any]:
    """Hydra's overrides of ``args``; one that cannot be parsed is named, with the likely fix
    (an unquoted ``probing.layers=[0, 3]`` reaches Python as ``probing.layers=[0,`` and ``3]``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in args:
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as err:
            reason = str(err).splitlines()[0] if str(err) else "not an override"
            raise BadInput(
                f"{arg}: cannot be read as key=value ({reason}); a value with spaces or "
                "brackets split by the shell? write it without spaces or quote it, e.g. "
                "'probing.layers=[0,3]'"
            ) from None
    return parser.parse_overrides(args)


def check_command_line(args: list[str], config_name: str) -> None:
    """Group options, keys and output folders of a command line of Hydra overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if any(a.startswith("-") and a not in _HYDRA_FLAGS_CHECKED for a in args):
        return  # --help, --cfg, -cn ...: Hydra's own business
    overrides = parse_overrides([a for a in args if a not in _HYDRA_FLAGS_CHECKED])
    groups = _groups()
    chosen: list[str] = []
    keys: list[str] = []
    for o in overrides:
        key = o.key_or_group
        # hydra.* keys and hydra/* groups (launcher, sweeper plugins): Hydra checks its own
        if key == "hydra" or key.startswith(("hydra.", "hydra/")) or o.is_add() or o.is_force_add():
            continue
        if key in groups and o.package is None:
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
            options = group_options(key)
            for value in values:
                if value is not None and str(value) not in options:
                    raise BadInput(f"{key}={value}: no such option; valid: {', '.join(options)}")
            if values and values[0] is not None:
                chosen.append(f"{key}={values[0]}")
        else:
            keys.append(key)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name, overrides=chosen)
    finally:
        GlobalHydra.instance().clear()
    plain = OmegaConf.to_container(cfg, resolve=False)
    for key in keys:
        problem = _key_problem(plain, key)  # type: ignore[arg-type]
        if problem:
            raise BadInput(problem)
    _check_folders(cfg)


def _check_folders(cfg: DictConfig) -> None:
    """The log folder, where Hydra writes the run folder before any of vlprobe's code runs.

    Cache and demo folders are written only when something is built (a read-only folder of
    finished caches is fine); a PermissionError there is reported as one line by the caller.
    """
    from vlprobe.config import register_resolvers

    register_resolvers()
    try:
        value = OmegaConf.select(cfg, "paths.log_dir")
    except Exception:  # noqa: BLE001 - an unresolvable path is Hydra's to report
        return
    if value:
        check_writable(value, "paths.log_dir")


def check_run_inputs(cfg: DictConfig, readers: list[Any]) -> None:
    """Settings checked against the open caches, before any logger run starts.

    Layers: each must exist in some cache (models of one run may differ in depth; a task uses
    the layers each model has). Splits: probes train, select and test on all three; analyses
    read their ``task.split``.
    """
    deepest = max(readers, key=lambda r: r.num_layers)
    hidden = deepest.num_layers + 1
    layers = OmegaConf.select(cfg, "probing.layers")
    bad = [int(x) for x in layers or [] if not 0 <= int(x) < hidden]
    if bad:
        raise BadInput(
            f"probing.layers={list(layers)}: {deepest.path} has hidden layers 0-{hidden - 1} "
            f"({deepest.file.attrs.get('model_name', 'its model')}); choose layers in that "
            "range, or probing.layers=null for all"
        )
    used = OmegaConf.select(cfg, "task.split", default=None)
    for reader in readers:
        counts = reader.split_counts()
        needed = list(counts) if used is None else [] if used == "all" else [used]
        empty = [split for split in needed if counts.get(split, 0) == 0]
        if empty:
            built_here = not OmegaConf.select(cfg, "data.cache")
            fix = (
                f"data.vg_split={list(OmegaConf.select(cfg, 'data.vg_split'))} gives it no "
                "images; give every split a positive fraction"
                if built_here and reader.file.attrs.get("dataset_kind") == "visual_genome"
                else "every split needs examples: check the split lists it was built from"
            )
            raise BadInput(f"the {empty[0]} split of {reader.path} is empty: {fix}")
