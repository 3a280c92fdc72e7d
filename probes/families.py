"""Probe families: P independent classifiers of one shape, stacked on a leading probe axis.

A family only maps standardised-on-the-fly ``(B, P, D)`` features to ``(B, P, C)`` logits;
:class:`probes.MultiProbe` owns the loss, metrics, best-epoch state and MDL. Every parameter
has the probe axis first, so the best-epoch snapshot and the test-time swap treat any family
alike. Add a family: subclass :class:`ProbeFamily`, then add ``configs/probe/<name>.yaml``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


class _ProbeMatmul(torch.autograd.Function):
    """``einsum("bpd,pdh->bph", x, w)`` whose weight gradient is one ``(P, H, B) @ (P, B, D)``.

    Autograd's own backward of the einsum multiplies ``(P, D, B)`` by ``(P, B, H)``, reading
    the batch in its transposed layout: on CPU that took twice the forward's time for wide
    views (13 layers x 1536-d, bench/fused_vs_separate.py). Used outside autocast only.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return torch.einsum("bpd,pdh->bph", x, w)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, w = ctx.saved_tensors
        grad_x = torch.einsum("bph,pdh->bpd", grad, w) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(grad.permute(1, 2, 0), x.transpose(0, 1)).transpose(1, 2)
        return grad_x, grad_w


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (torch < 2.4 takes no argument)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # pragma: no cover - old torch
        if device_type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return bool(torch.is_autocast_enabled())


def probe_matmul(h: Tensor, w: Tensor, autocast: bool) -> Tensor:
    """``(B, P, D) x (P, D, H) -> (B, P, H)``, with the fast weight gradient outside autocast."""
    return torch.einsum("bpd,pdh->bph", h, w) if autocast else _ProbeMatmul.apply(h, w)


def standardised_affine(
    x: Tensor, w: Tensor, b: Tensor | None, mean: Tensor, scale: Tensor
) -> Tensor:
    """``(x - mean) * scale @ w + b`` per probe: the first layer of every family.

    Outside autocast the standardisation is folded into the weight,
    ``x @ (w * s) + b - (m * s) @ w``: two fewer passes over the (B, P, D) batch, which took
    most of a wide view's step on CPU (bench/fused_vs_separate.py). Under autocast bf16/fp16
    matmuls need standardised inputs (a folded-in mean would cancel badly).
    """
    scale, mean = scale.to(w.dtype), mean.to(w.dtype)
    autocast = autocast_enabled(x.device.type)
    if autocast:
        h = probe_matmul(torch.addcmul(-mean * scale, x.to(scale.dtype), scale), w, True)
        return h if b is None else h + b
    shift = -torch.einsum("pd,pdh->ph", mean * scale, w)
    bias = shift if b is None else b + shift
    return probe_matmul(x.to(scale.dtype), w * scale.unsqueeze(-1), False) + bias


def probe_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded by (seed, probe name): a probe's initial weights (and dropout) do
    not depend on which other probes share its run, nor on their number or order."""
    digest = hashlib.sha256(f"{int(seed)}/{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _uniform(shape: tuple[int, ...], fan_in: int, gen: torch.Generator) -> Tensor:
    """``nn.Linear``'s init: kaiming-uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.rand(shape, generator=gen).mul_(2 * bound).sub_(bound)


def linear_init(seed: int, name: str, in_dim: int, num_classes: int) -> tuple[Tensor, Tensor]:
    """One linear probe's initial ``(D, C)`` weight and ``(C,)`` bias (as :class:`LinearProbe`)."""
    gen = probe_generator(seed, name)
    return _uniform((in_dim, num_classes), in_dim, gen), _uniform((num_classes,), in_dim, gen)


class ProbeFamily(nn.Module):
    """P classifiers over ``(B, P, D)`` features; every parameter is ``(P, ...)``."""

    #: short name written into every result row (``family``)
    name: ClassVar[str]
    #: constructor arguments that set the probe's capacity, written into rows (``capacity``)
    capacity_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_probes: int, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_probes, self.in_dim, self.num_classes = num_probes, in_dim, num_classes

    def forward(
        self, x: Tensor, mean: Tensor, scale: Tensor, probes: Tensor | None = None
    ) -> Tensor:
        """Raw ``(B, P, D)`` features, per-probe input ``mean`` and ``1/std`` -> logits.

        ``probes``: only these probes (``x``, ``mean``, ``scale`` hold their columns): the
        running slots of a fit, so probes that stopped take no forward or backward work."""
        raise NotImplementedError

    def init_shapes(self) -> list[tuple[Tensor, int]]:
        """Every parameter with the fan-in of its uniform init, in drawing order."""
        raise NotImplementedError

    def apply_note(self) -> str:
        """One line: how one probe's parameters (``state_dict`` names, probe axis dropped)
        map standardised features ``z = (x - mean) / std`` to logits (``probing.save_weights``)."""
        raise NotImplementedError

    @torch.no_grad()
    def reset_parameters(self, generators: list[torch.Generator] | None = None) -> None:
        """Probe ``k``'s slices drawn from ``generators[k]`` (default: unseeded ones)."""
        gens = generators or [
            torch.Generator().manual_seed(int(torch.randint(2**62, ())))
            for _ in range(self.num_probes)
        ]
        if len(gens) != self.num_probes:
            raise ValueError(f"need {self.num_probes} generators, got {len(gens)}")
        #: seeded generators go on drawing the probe's dropout masks (see ``_AffineStack``)
        self.generators = gens if generators else None
        for k, gen in enumerate(gens):
            for param, fan_in in self.init_shapes():
                param[k] = _uniform(tuple(param.shape[1:]), fan_in, gen)


class _AffineStack(ProbeFamily):
    """Affine layers ``in_dim -> *hidden -> num_classes`` with an activation between them."""

    def __init__(
        self,
        num_probes: int,
        in_dim: int,
        num_classes: int,
        hidden: list[int],
        dropout: float | Sequence[float] = 0.0,
        activation: str = "relu",
    ) -> None:
        """``dropout``: one rate for all probes, or one per probe (fused selection)."""
        super().__init__(num_probes, in_dim, num_classes)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}: {activation!r}")
        dims = [in_dim, *hidden, num_classes]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(num_probes, d_in, d_out)) for d_in, d_out in pairwise(dims)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.empty(num_probes, d_out)) for d_out in dims[1:]
        )
        self._act = _ACTIVATIONS[activation]
        self.activation = activation
        rates = [float(dropout)] * num_probes if isinstance(dropout, int | float) else dropout
        if len(rates) != num_probes or not all(0 <= r < 1 for r in rates):
            raise ValueError(f"dropout needs {num_probes} rates in [0, 1), got {dropout}")
        self.dropout_rates = torch.tensor([float(r) for r in rates])
        self.generators: list[torch.Generator] | None = None
        self.reset_parameters()

    def init_shapes(self) -> list[tuple[Tensor, int]]:
        pairs = zip(self.weights, self.biases, strict=True)
        return [(t, w.shape[1]) for w, b in pairs for t in (w, b)]

    def apply_note(self) -> str:
        last = len(self.weights) - 1
        if last == 0:
            return "logits = z @ weights.0 + biases.0"
        return (
            f"h = z; for i in 0..{last}: h = h @ weights.i + biases.i, then {self.activation} "
            f"for i < {last}; logits = h (no dropout at test)"
        )

    def forward(
        self, x: Tensor, mean: Tensor, scale: Tensor, probes: Tensor | None = None
    ) -> Tensor:
        weights, biases = list(self.weights), list(self.biases)
        if probes is not None:
            weights = [w[probes.to(w.device)] for w in weights]
            biases = [b[probes.to(b.device)] for b in biases]
        h = standardised_affine(x, weights[0], biases[0], mean, scale)
        autocast = autocast_enabled(x.device.type)
        for w, b in zip(weights[1:], biases[1:], strict=True):
            h = probe_matmul(self._dropout(self._act(h), probes), w, autocast) + b
        return h

    def _dropout(self, h: Tensor, probes: Tensor | None = None) -> Tensor:
        """Dropout at each probe's own rate, whose mask for probe ``k`` comes from probe
        ``k``'s own generator (when seeded): the same masks alone or fused, whatever the
        other probes (``probes``: only these draw, as in :meth:`forward`)."""
        keys = list(range(self.num_probes)) if probes is None else probes.tolist()
        p = self.dropout_rates[keys]
        if not self.training or not bool((p > 0).any()):
            return h
        b, _, width = h.shape
        if self.generators is None:
            keep = torch.rand(b, len(keys), width)
        else:
            keep = torch.stack(
                [torch.rand(b, width, generator=self.generators[k]) for k in keys], 1
            )
        mask = (keep >= p[:, None]).to(h.device, h.dtype)
        return h * mask / (1 - p[:, None]).to(h.device, h.dtype)


class LinearProbe(_AffineStack):
    """One affine map per probe: the standard probe."""

    name = "linear"

    def __init__(self, num_probes: int, in_dim: int, num_classes: int) -> None:
        super().__init__(num_probes, in_dim, num_classes, hidden=[])


class MLPProbe(_AffineStack):
    """``num_hidden_layers`` hidden layers of ``hidden_dim`` units with dropout, then a linear."""

    name = "mlp"
    capacity_keys = ("hidden_dim", "num_hidden_layers")

    def __init__(
        self,
        num_probes: int,
        in_dim: int,
        num_classes: int,
        hidden_dim: int = 256,
        num_hidden_layers: int = 1,
        dropout: float | Sequence[float] = 0.0,
        activation: str = "relu",
    ) -> None:
        if num_hidden_layers < 1:
            raise ValueError("an MLP probe needs num_hidden_layers >= 1")
        hidden = [hidden_dim] * num_hidden_layers
        super().__init__(num_probes, in_dim, num_classes, hidden, dropout, activation)


class LowRankProbe(ProbeFamily):
    """A linear probe whose ``(D, C)`` weight has rank at most ``rank``: ``U (D, r) @ V (r, C)``.

    Fused over probes as ``(P, D, r) x (P, r, C)``; ``rank`` sweeps probe capacity between a
    constant and a full linear probe (Hewitt and Liang 2019 restrict capacity the same way).
    """

    name = "lowrank"
    capacity_keys = ("rank",)

    def __init__(self, num_probes: int, in_dim: int, num_classes: int, rank: int = 8) -> None:
        super().__init__(num_probes, in_dim, num_classes)
        if rank < 1:
            raise ValueError(f"probe.rank must be >= 1, got {rank}")
        self.rank = rank
        self.down = nn.Parameter(torch.empty(num_probes, in_dim, rank))
        self.up = nn.Parameter(torch.empty(num_probes, rank, num_classes))
        self.bias = nn.Parameter(torch.empty(num_probes, num_classes))
        self.reset_parameters()

    def init_shapes(self) -> list[tuple[Tensor, int]]:
        return [(self.down, self.in_dim), (self.up, self.rank), (self.bias, self.in_dim)]

    def apply_note(self) -> str:
        return "logits = z @ down @ up + bias"

    def forward(
        self, x: Tensor, mean: Tensor, scale: Tensor, probes: Tensor | None = None
    ) -> Tensor:
        down, up, bias = self.down, self.up, self.bias
        if probes is not None:
            down, up, bias = (t[probes.to(t.device)] for t in (down, up, bias))
        h = standardised_affine(x, down, None, mean, scale)
        return probe_matmul(h, up, autocast_enabled(x.device.type)) + bias

    def effective_weight(self) -> Tensor:
        """``(P, D, C)``: the linear map each probe applies to standardised inputs."""
        return self.down @ self.up
