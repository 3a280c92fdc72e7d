"""The ``train_probe`` Hydra app: ``vlprobe train ARGS`` and the repository's
``python train_probe.py ARGS`` both run :func:`cli`.

Its configs are :func:`vlprobe.config.config_dir` (the repository's ``configs/`` in a checkout,
the copy shipped in the package after ``pip install .``); the job is named ``train_probe``
after this module, so both entry points write the same run folders and log files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import hydra
from omegaconf import DictConfig

from vlprobe.config import config_dir, register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train_probe")
def main(cfg: DictConfig) -> float | None:
    from hydra.errors import InstantiationException

    from probes.run import run
    from vlprobe.cache.reader import CacheError
    from vlprobe.settings_check import check_values

    bad_input = (OSError, ValueError, CacheError)
    try:
        check_values(cfg)  # every value by type and range, before anything is built or written
        return run(cfg)
    except bad_input as err:
        # bad input (a path, a data file, a setting, a folder): one line naming it, exit 2
        exit_bad_input(err)
    except InstantiationException as err:
        # a constructor built from config (e.g. probing.*) refused a setting: its own message
        if not isinstance(err.__cause__, bad_input):
            raise
        exit_bad_input(err.__cause__)


def exit_bad_input(err: BaseException) -> None:
    """One line naming the file or key and the fix, exit code 2."""
    from vlprobe.cache.reader import CacheError

    if isinstance(err, PermissionError):
        hint = ": point VLPROBE_ROOT or paths.* at a writable folder"
    elif isinstance(err, (ValueError, CacheError, FileNotFoundError)):
        hint = ""
    elif isinstance(err, OSError) and err.errno is not None:  # the system refused a read/write
        hint = "" if err.filename else f" (a file of the run's folder {_output_dir()})"
    else:  # HDF5 read errors carry no errno: a chunk that fails its checksum, say
        hint = " (a damaged cache? `vlprobe verify CACHE` checks)"
    print(f"train_probe: error: {err}{hint}", file=sys.stderr)
    sys.exit(2)


def _output_dir() -> str:
    """The Hydra run's output folder (where a run writes), or ``?`` outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return str(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return "?"


def cli(args: list[str] | None = None) -> None:
    """Run the Hydra app on ``args`` (default: ``sys.argv[1:]``), its config composed once:
    overrides that do not parse and unknown group options are refused first, an unknown key
    when Hydra composes, the log folder before Hydra writes the run folder (``FolderCheck``)."""
    from hydra.errors import CompactHydraException

    from vlprobe.preflight import BadInput, check_overrides, unknown_key

    if args is not None:
        sys.argv = [sys.argv[0], *args]
    try:
        check_overrides(sys.argv[1:])
        with _hydra_errors_raised():
            main()
    except BadInput as err:
        exit_bad_input(err)
    except CompactHydraException as err:  # a composition error, shown as Hydra shows it
        problem = unknown_key(err)
        if problem is not None:
            exit_bad_input(problem)
        cause = f"{os.linesep}{err.__cause__}" if err.__cause__ is not None else ""
        print(f"{err}{cause}", file=sys.stderr)
        sys.exit(1)


@contextmanager
def _hydra_errors_raised() -> Iterator[None]:
    """Hydra raises its errors (``HYDRA_FULL_ERROR``) instead of printing them, so that a
    composition error can be read; the variable is restored afterwards."""
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = before
