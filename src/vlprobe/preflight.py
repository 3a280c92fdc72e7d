"""Bad input caught before anything runs: one line naming the key or file and the fix.

:func:`check_overrides` runs before the config is composed (an override that does not parse,
an unknown group option); the one composition then names an unknown key (:func:`unknown_key`)
and :func:`check_folders` a log folder that cannot be written, before Hydra makes the run
folder (:class:`FolderCheck`); :func:`check_run_inputs` runs once the cache is open and before
any logger starts (layers the model does not have, an empty split). All raise :class:`BadInput`,
which ``train_probe.py`` and ``vlprobe`` print as one line with exit code 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
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


def unknown_key(err: Exception) -> BadInput | None:
    """Hydra's refusal of an override of a key the config lacks, as one line naming the valid
    keys beside it; None for any other composition error (Hydra's own message stands)."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = err.__cause__
    if not isinstance(cause, ConfigAttributeError | ConfigKeyError) or not cause.full_key:
        return None
    parent = cause.parent_node
    # a key under a list or a plain value (probing.layers.a): Hydra's message names it
    if not OmegaConf.is_dict(parent) or len(parent) == 0:
        return None
    key = str(err).split("'")[1] if str(err).startswith("Could not override '") else None
    if key is None:
        return None
    where = cause.full_key.rpartition(".")[0] or "the top level"
    valid = ", ".join(sorted(str(k) for k in parent if k != "hydra")) or "(none)"
    return BadInput(
        f"unknown config key '{key}'; valid keys under {where}: {valid} "
        f"(to add a new key write +{key}=...)"
    )


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


def check_overrides(args: list[str]) -> None:
    """Overrides that parse and group options that exist, before any composition: Hydra's
    own messages for these are a traceback or a list spread over many lines."""
    if any(a.startswith("-") and a not in _HYDRA_FLAGS_CHECKED for a in args):
        return  # --help, --cfg, -cn ...: Hydra's own business
    groups = _groups()
    for o in parse_overrides([a for a in args if a not in _HYDRA_FLAGS_CHECKED]):
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


def compose_checked(config_name: str, overrides: list[str]) -> DictConfig:
    """``config_name`` composed once with ``overrides`` (for commands that are not Hydra apps:
    ``vlprobe extract``), each bad override and an unwritable log folder as one line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    check_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides)
    except ConfigCompositionException as err:
        raise (unknown_key(err) or err) from None
    check_folders(cfg)
    return cfg


def check_folders(cfg: DictConfig) -> None:
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


class FolderCheck(Callback):
    """``check_folders`` on the config Hydra composed for the app, before it makes the run
    folder (``hydra.callbacks`` in ``configs/hydra/default.yaml``): bad input exits 2."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    @staticmethod
    def _check(config: DictConfig) -> None:
        from vlprobe.train_probe import exit_bad_input

        try:
            check_folders(config)
        except BadInput as err:
            exit_bad_input(err)


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
