"""A quiet, informative console: third-party noise filtered by its exact message, torch's
CPU threads set on purpose, and a progress line per probed view.

Each filter names one message, so every other warning of the same library still shows.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Lightning's advert for its cloud logger, printed by every Trainer
LITLOGGER_TIP = (
    "Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]"
)
#: torch 2.10 deprecates ``LeafSpec``; Lightning 2.6's ``_pytree`` still uses it (not ours)
LEAFSPEC_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
#: the Lightning loggers that print the tip
RANK_ZERO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
)

#: most CPU threads a run takes by default: probes are small, more threads mostly contend
MAX_DEFAULT_THREADS = 4

log = logging.getLogger(__name__)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_third_party() -> None:
    """Filter the litlogger tip and the ``LeafSpec`` deprecation warning (idempotent)."""
    warnings.filterwarnings("ignore", message=LEAFSPEC_WARNING, category=FutureWarning)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) for f in logger.filters):
            logger.addFilter(_DropMessage(LITLOGGER_TIP))


def quiet_wandb_logger(logger: Any) -> None:
    """Lightning's ``WandbLogger`` passes ``anonymous=None`` to ``wandb.init``, whose setting
    is deprecated and warns when given at all: leave the unset value out."""
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set (a launcher or the user chose), else min(4, cores)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(MAX_DEFAULT_THREADS, os.cpu_count() or 1))


def set_threads(threads: Any) -> int:
    """Set torch's CPU threads to ``threads`` (the ``threads`` config key; null: the default)
    and return them; anything but a positive whole number is refused in one line."""
    import torch

    if threads is None:
        count = default_threads()
    elif isinstance(threads, int) and not isinstance(threads, bool) and threads > 0:
        count = threads
    else:
        raise ValueError(f"threads={threads!r}: give a positive whole number, or null (default)")
    torch.set_num_threads(count)
    return count


@contextmanager
def progress(what: str, detail: str) -> Iterator[None]:
    """One line when a step starts and one when it ends, with its time: a slow or stalled run
    says where it is."""
    log.info("%s: %s ...", what, detail)
    start = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", what, time.perf_counter() - start)
