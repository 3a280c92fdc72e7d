"""Every value a user can type, checked by type and range in one pass over the composed config.

Hydra and OmegaConf take any value for an untyped key: ``probing.layers=[0.5,3.9]`` probed
layers 0 and 3, ``probing.layers=012`` (a string) layers 0, 1 and 2, ``trainer.max_epochs=abc``
was accepted and ``loader.batch_size=-4`` hung. :data:`RULES` declares each key's type and
range once; :func:`check_values` runs them on the config of ``train_probe`` (inside the Hydra
app, before :func:`probes.run.run` writes anything) and of ``vlprobe extract`` / ``pretrain``
(the keys they share), and raises :class:`~vlprobe.preflight.BadInput` with one line naming the
key, the value, what it must be and an example. A device asked for by name that this machine
lacks (``trainer=gpu`` without a GPU) is refused too; ``auto`` takes what there is.
"""

from __future__ import annotations

import math
import netrc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, ListConfig, OmegaConf

from vlprobe.analysis.mdl import MDL_VARIANTS
from vlprobe.preflight import BadInput

#: a check returns what is wrong with a value (``"must be ..."``), None when it is fine
Check = Callable[[Any], "str | None"]

SEED_MAX = 2**32 - 1  # numpy's generators take seeds 0 ... 2**32 - 1


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """An int or a finite float (``nan`` passes every range comparison, ``inf`` most)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole(low: int | None = None, high: int | None = None) -> Check:
    """A whole number (not 1.5, not a string, not true) in ``[low, high]``."""

    def check(value: Any) -> str | None:
        if not _is_whole(value):
            return "must be a whole number"
        if low is not None and value < low:
            return f"must be >= {low}"
        if high is not None and value > high:
            return f"must be <= {high}"
        return None

    return check


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> Check:
    """A number in the interval from ``low`` to ``high`` (each end open or closed)."""

    def check(value: Any) -> str | None:
        if not _is_number(value):
            return "must be a finite number"
        if low is not None and (value <= low if open_low else value < low):
            return f"must be {'>' if open_low else '>='} {low}"
        if high is not None and (value >= high if open_high else value > high):
            return f"must be {'<' if open_high else '<='} {high}"
        return None

    return check


def flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def one_of(*choices: Any) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(str, choices))}"

    return check


def nullable(inner: Check) -> Check:
    """``inner``, or null."""

    def check(value: Any) -> str | None:
        return None if value is None else inner(value)

    return check


def list_of(item: Check, items: str, *, empty: bool = True) -> Check:
    """A list in brackets (``[0,3]``, not ``3`` or ``012``) whose every entry passes ``item``;
    ``items`` says what the entries are, in the plural (``whole numbers >= 0``)."""

    def check(value: Any) -> str | None:
        if not isinstance(value, list) or any(item(entry) for entry in value):
            return f"must be {items}, in a list"
        if not value and not empty:
            return f"must be {items}, in a list that is not empty"
        return None

    return check


def device_name(value: Any) -> str | None:
    """A torch device: auto, cpu, mps, cuda or cuda:<index>."""
    if value in ("auto", "cpu", "mps", "cuda") or (
        isinstance(value, str) and value.startswith("cuda:") and value[5:].isdigit()
    ):
        return None
    return "must be auto, cpu, cuda, cuda:<index> or mps"


def devices(value: Any) -> str | None:
    """Lightning's ``devices``: auto, a count (-1: all), or a list of device indices."""
    if value == "auto" or (_is_whole(value) and (value >= 1 or value == -1)):
        return None
    if isinstance(value, list) and value and all(_is_whole(v) and v >= 0 for v in value):
        return None
    return "must be auto, a count >= 1 (-1: all) or a list of device indices"


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


@dataclass(frozen=True)
class Rule:
    """How ``key`` is checked, the noun its message starts with, and a value that works."""

    check: Check
    noun: str
    example: str
    #: the message, when not ``{key}={value}: {noun} <problem>, e.g. {key}={example}``
    template: str | None = None


RULES: dict[str, Rule] = {
    "seed": Rule(whole(0, SEED_MAX), "the seed", "1"),
    "seeds": Rule(
        nullable(list_of(whole(0, SEED_MAX), "whole numbers >= 0", empty=False)),
        "seeds",
        "[1,2,3]",
    ),
    # what to probe (configs/probing/)
    "probing.layers": Rule(
        nullable(list_of(whole(0), "whole numbers >= 0")), "layers", "[0,3] (null: all layers)"
    ),
    "probing.control": Rule(flag, "probing.control", "true"),
    "probing.shuffled_control": Rule(flag, "probing.shuffled_control", "true"),
    "probing.mdl": Rule(flag, "probing.mdl", "true"),
    "probing.save_weights": Rule(flag, "probing.save_weights", "true"),
    "probing.mdl_fractions": Rule(
        nullable(list_of(number(0, 1, open_low=True), "fractions in (0, 1]", empty=False)),
        "MDL block edges",
        "[0.1,0.5,1.0]",
    ),
    "probing.mdl_variant": Rule(one_of(*MDL_VARIANTS), "the MDL variant", "voita"),
    "probing.l2_grid": Rule(
        list_of(number(0), "numbers >= 0", empty=False),
        "penalties",
        "[0.001,0.01,0.1]",
        template="{key} needs penalties >= 0, got {value}: {noun} {problem}, e.g. {key}={example}",
    ),
    "probing.solver": Rule(one_of("auto", "lbfgs", "sgd"), "the solver", "auto"),
    "probing.max_iter": Rule(whole(1), "the L-BFGS iteration limit", "10000"),
    # the probe module (configs/probe/): keys of the configured family only
    "probe.lr": Rule(number(0, open_low=True), "the learning rate", "0.01"),
    "probe.weight_decay": Rule(number(0), "the weight decay", "0.0"),
    "probe.hidden_dim": Rule(whole(1), "the hidden width", "256"),
    "probe.num_hidden_layers": Rule(whole(1), "the number of hidden layers", "1"),
    "probe.dropout": Rule(number(0, 1, open_high=True), "the dropout rate", "0.1"),
    "probe.rank": Rule(whole(1), "the rank", "8"),
    # reading the cache (configs/loader/)
    "loader.batch_size": Rule(whole(1), "the batch size", "256"),
    "loader.mode": Rule(one_of("auto", "stream", "memory"), "the loader mode", "auto"),
    "loader.memory_budget_mb": Rule(number(0, open_low=True), "the memory budget", "2048"),
    "loader.num_workers": Rule(whole(0), "the number of workers", "0"),
    # the Lightning Trainer (configs/trainer/)
    "trainer.accelerator": Rule(one_of(*ACCELERATORS), "the accelerator", "auto"),
    "trainer.devices": Rule(devices, "devices", "1"),
    "trainer.num_nodes": Rule(whole(1), "the number of nodes", "1"),
    "trainer.max_epochs": Rule(whole(1), "the epoch limit", "30"),
    "trainer.log_every_n_steps": Rule(whole(1), "the logging interval", "5"),
    # the data set (configs/data/)
    "data.scenes": Rule(whole(1), "the number of demo scenes", "300"),
    "data.seed": Rule(whole(0, SEED_MAX), "the demo data's seed", "0"),
    "data.feature_dim": Rule(whole(1), "the region feature size", "2048"),
    "data.iou_threshold": Rule(number(0, 1), "the IoU threshold", "0.5"),
    "data.tie_mode": Rule(one_of("iou", "add"), "the box tie mode", "iou"),
    "data.mismatched": Rule(flag, "data.mismatched", "true"),
    "data.strict": Rule(flag, "data.strict", "false"),
    # their range (three, each > 0, summing to 1) is the pipeline's check_settings
    "data.vg_split": Rule(list_of(number(), "numbers"), "split fractions", "[0.8,0.1,0.1]"),
    # the model (configs/model/) and its extraction (configs/extraction/)
    "model.device": Rule(device_name, "the model's device", "auto"),
    "model.random_init": Rule(flag, "model.random_init", "true"),
    "extraction.batch_size": Rule(whole(1), "the batch size", "32"),
    "extraction.dtype": Rule(one_of("float16", "float32"), "the stored dtype", "float16"),
    "extraction.max_attention_maps": Rule(whole(0), "the number of attention maps", "8"),
    "extraction.progress": Rule(flag, "extraction.progress", "false"),
    "extraction.accelerator": Rule(one_of(*ACCELERATORS), "the accelerator", "auto"),
    "extraction.devices": Rule(devices, "devices", "1"),
    "extraction.num_nodes": Rule(whole(1), "the number of nodes", "1"),
    "extraction.shards": Rule(
        nullable(whole(1)), "the number of shards", "4 (null: one per process)"
    ),
    # loggers (configs/logger/)
    "logger.wandb.offline": Rule(flag, "logger.wandb.offline", "true"),
}

#: the keys whose value names a device: asked for by name, it must be on this machine
DEVICE_KEYS = ("trainer.accelerator", "extraction.accelerator", "model.device")

_ABSENT = object()


def shown(value: Any) -> str:
    """A value as the user would type it back (``[0.5, 3.9]``, ``012``, ``null``)."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, ListConfig) else value


def check_values(cfg: DictConfig) -> None:
    """Each key of :data:`RULES` that ``cfg`` has, then devices and the W&B login."""
    for key, rule in RULES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue  # another config (extract has no trainer) or another probe family
        problem = rule.check(_plain(value))
        if problem:
            template = rule.template or "{key}={value}: {noun} {problem}, e.g. {key}={example}"
            raise BadInput(
                template.format(
                    key=key,
                    value=shown(value),
                    noun=rule.noun,
                    problem=problem,
                    example=rule.example,
                )
            )
    for key in DEVICE_KEYS:
        check_device(key, OmegaConf.select(cfg, key, default=None))
    if OmegaConf.select(cfg, "logger.wandb.offline", default=True) is False:
        check_wandb_login()


def device_available(name: str) -> bool:
    """Whether this machine has the device ``name`` (cpu and auto: always)."""
    import torch

    if name in ("gpu", "cuda") or name.startswith("cuda:"):
        return torch.cuda.is_available()
    if name == "mps":
        return torch.backends.mps.is_available()
    if name == "tpu":
        from lightning_utilities.core.imports import RequirementCache

        return bool(RequirementCache("torch_xla"))
    return True


def check_device(key: str, name: Any) -> None:
    """``trainer=gpu`` on a machine without one is an error, not a silent CPU run."""
    if isinstance(name, str) and not device_available(name):
        raise BadInput(
            f"{key}={name}: this machine has no {name} device (torch sees none); run where "
            f"there is one, choose {key}=cpu, or {key}=auto to use one only where present"
        )


def check_wandb_login() -> None:
    """``logger.wandb.offline=false`` needs a W&B login: refused now, not as wandb's traceback."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return  # the environment keeps wandb offline: no login needed
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        if netrc.netrc(path).authenticators(host):
            return
    except (OSError, netrc.NetrcParseError):
        pass
    raise BadInput(
        "logger.wandb.offline=false: no W&B login on this machine (no WANDB_API_KEY, no "
        f"{host} entry in {path}); run `wandb login` first, or keep logger.wandb.offline=true "
        "and upload later with `wandb sync`"
    )
