"""Many independent probes (one per layer or per head) trained in one pass over the data.

The probes' weights are stacked along a leading probe axis and applied with one einsum, so
P probes cost one batched matmul instead of P training runs. Their losses are summed: the
gradient of the sum with respect to probe k's slice is the gradient of probe k's own loss,
and Adam(W) updates are element-wise, so the probes never interact (as long as nothing
couples parameters across probes, e.g. gradient clipping by global norm: leave
``gradient_clip_val`` unset). Metrics, best epoch and test-at-best-epoch are kept per probe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import get_class
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from probes.families import LinearProbe, ProbeFamily, probe_generator
from probes.metrics import MultiProbeConfusion


class MultiProbe(pl.LightningModule):
    """P classifiers of one family (linear, MLP, low-rank) over (B, P, D) features, fused.

    Batches are dicts ``{"x": (B, P, D) float, "y": (B,) long}``; ``x[:, k]`` is probe k's
    input (e.g. layer k's pooled activation). After ``trainer.fit`` then
    ``trainer.test(model, ...)``, :meth:`results` gives one row per probe, each tested with
    the parameters from its own best validation epoch.
    """

    def __init__(
        self,
        num_probes: int,
        in_dim: int,
        num_classes: int,
        family: Callable[..., ProbeFamily] | str = LinearProbe,
        lr: float = 1e-3,
        weight_decay: float | Sequence[float] = 0.0,
        probe_names: list[str] | None = None,
        chance: float | None = None,
        seed: int | None = None,
        init_names: list[str] | None = None,
        l2: float | Sequence[float] = 0.0,
        slot_inputs: Sequence[int] | None = None,
        label_columns: Sequence[int] | None = None,
        **family_kwargs: Any,
    ) -> None:
        """``family(num_probes, in_dim, num_classes, **family_kwargs)`` builds the probes;
        ``family`` is a :class:`ProbeFamily` class or its import path. With ``seed``, probe
        ``k`` starts from weights drawn by ``probe_generator(seed, init_names[k])`` (default:
        its name), the same alone or among any other probes.

        Probes are *slots*: several may read the same input column (``slot_inputs[k]``: the
        column of the ``(B, P_in, D)`` batch probe ``k`` reads) and learn other labels
        (``label_columns[k]``: its column of a ``(B, L)`` label batch), with their own
        decoupled ``weight_decay`` (AdamW's) and ``l2`` penalty ``l2 / 2 ||W||^2`` on the
        mean loss (weights only, as the full-batch solver), each one value or one per slot.
        So seeds' label sets and penalty grids ride the probe axis of one pass."""
        super().__init__()
        names = list(probe_names) if probe_names is not None else None
        if names is None:
            width = max(2, len(str(num_probes - 1)))
            names = [f"p{i:0{width}d}" for i in range(num_probes)]
        if len(names) != num_probes or len(set(names)) != num_probes:
            raise ValueError(f"need {num_probes} distinct probe names, got {names}")
        if isinstance(family, str):  # from hparams (a checkpoint): the class's import path
            family = get_class(family)
        self.probes: ProbeFamily = family(num_probes, in_dim, num_classes, **family_kwargs)
        self.save_hyperparameters(ignore=["family"])
        cls = type(self.probes)
        self.hparams["family"] = f"{cls.__module__}.{cls.__qualname__}"
        self.probe_names: list[str] = names
        self.weight_decay = _per_probe(weight_decay, num_probes, "weight_decay")
        self.l2 = _per_probe(l2, num_probes, "l2")
        inputs = list(range(num_probes)) if slot_inputs is None else list(slot_inputs)
        if len(inputs) != num_probes:
            raise ValueError(f"need {num_probes} slot_inputs, got {len(inputs)}")
        #: index of each slot's input column; None when slot k reads column k
        self.slot_index = None if slot_inputs is None else torch.tensor(inputs)
        self.num_inputs = max(inputs) + 1
        if label_columns is not None and len(label_columns) != num_probes:
            raise ValueError(f"need {num_probes} label_columns, got {len(label_columns)}")
        self.label_index = None if label_columns is None else torch.tensor(list(label_columns))
        if seed is not None:
            keys = list(init_names) if init_names is not None else names
            if len(keys) != num_probes:
                raise ValueError(f"need {num_probes} init_names, got {len(keys)}")
            self.probes.reset_parameters([probe_generator(seed, key) for key in keys])

        # Identity standardisation until set_input_stats is called.
        self.register_buffer("input_mean", torch.zeros(num_probes, in_dim))
        self.register_buffer("input_std", torch.ones(num_probes, in_dim))

        # Per-probe best state: buffers, so checkpoints carry them.
        for i, param in enumerate(self._params()):
            self.register_buffer(f"best_param_{i}", param.detach().clone())
        self.register_buffer("best_epoch", torch.full((num_probes,), -1, dtype=torch.long))
        self.register_buffer("best_val_acc", torch.full((num_probes,), -math.inf))
        self.register_buffer("best_val_f1", torch.full((num_probes,), math.nan))
        self.register_buffer("test_acc", torch.full((num_probes,), math.nan))
        self.register_buffer("test_f1", torch.full((num_probes,), math.nan))
        #: probes stopped by a plateau rule: they keep their best state and take no updates
        self.register_buffer("stopped", torch.zeros(num_probes, dtype=torch.bool))

        self.val_conf = MultiProbeConfusion(num_probes, num_classes)
        self.test_conf = MultiProbeConfusion(num_probes, num_classes)
        #: probes whose best val acc improved at the last validation epoch (for callbacks)
        self.last_improved: Tensor = torch.zeros(num_probes, dtype=torch.bool)
        self._test_chance: float | None = None
        self._swapped_out: list[Tensor] | None = None

    # ------------------------------------------------------------------ parameters
    @property
    def num_params_per_probe(self) -> int:
        """Trainable parameters of one probe (all probes are the same size)."""
        return sum(p[0].numel() for p in self.parameters())

    def _best_buffers(self) -> list[Tensor]:
        return [getattr(self, f"best_param_{i}") for i in range(len(self._params()))]

    def _params(self) -> list[Tensor]:
        return list(self.probes.parameters())

    @torch.no_grad()
    def set_input_stats(self, mean: Tensor, std: Tensor, eps: float = 1e-6) -> None:
        """Standardise inputs per input column and feature (``(P_in, D)``, each slot with its
        column's); features with std <= eps are only centred.

        Probing results depend on feature scale (layers differ wildly in norm), so callers
        standardise with training-set statistics.
        """
        dim = self.input_mean.shape[1]
        rows = mean.shape[0] if mean.ndim == 2 else -1
        enough = rows >= self.num_inputs if self.slot_index is not None else rows == self.num_inputs
        ok = enough and mean.shape[1] == dim
        if not ok or mean.shape != std.shape:
            raise ValueError(f"mean and std must have shape ({self.num_inputs}, {dim})")
        if self.slot_index is not None:
            mean, std = mean[self.slot_index], std[self.slot_index]
        std = std.to(self.input_std)
        self.input_mean.copy_(mean)
        self.input_std.copy_(torch.where(std > eps, std, torch.ones_like(std)))

    @torch.no_grad()
    def tested_state(self, k: int) -> dict[str, Tensor]:
        """Slot ``k``'s parameters as :meth:`on_test_start` tests them (its best epoch's, the
        current ones if it was never validated), probe axis dropped, on the CPU."""
        best = self._best_buffers() if int(self.best_epoch[k]) >= 0 else self._params()
        named = self.probes.named_parameters()
        return {n: b[k].to(p.dtype).cpu().clone() for (n, p), b in zip(named, best, strict=True)}

    # ------------------------------------------------------------------ forward / loss
    def forward(self, x: Tensor, probes: Tensor | None = None) -> Tensor:
        """(B, P_in, D) features -> (B, P, C) logits (``probes``: only theirs, (B, len, C))."""
        index = self.slot_index
        if probes is not None:
            index = probes if index is None else index[probes]
        if index is not None:
            x = x.index_select(1, index.to(x.device))
        mean, std = self.input_mean, self.input_std
        if probes is not None:
            mean, std = mean[probes], std[probes]
        # The cache may hold float16; the family follows its parameters' dtype.
        return self.probes(x, mean, std.reciprocal(), probes)

    def targets(self, y: Tensor, probes: Tensor | None = None) -> Tensor:
        """(B, P) labels of every slot (``probes``: of those) from a (B,) batch or a (B, L)
        batch of label sets."""
        count = len(self.probe_names) if probes is None else len(probes)
        if y.ndim == 1:
            return y.unsqueeze(1).expand(len(y), count)
        if self.label_index is None:
            raise ValueError("a (B, L) label batch needs label_columns")
        index = self.label_index if probes is None else self.label_index[probes]
        return y.index_select(1, index.to(y.device))

    def _loss(self, logits: Tensor, y: Tensor, probes: Tensor | None = None) -> Tensor:
        """Sum over probes of each probe's mean cross-entropy, in float32."""
        per_example = F.cross_entropy(
            logits.float().permute(0, 2, 1), self.targets(y, probes), reduction="none"
        )
        return per_example.mean(0).sum()

    def running(self) -> Tensor | None:
        """Indices of the probes still training (None: every probe is)."""
        if not bool(self.stopped.any()):
            return None
        return (~self.stopped).nonzero().squeeze(1)

    def train_loss(self, batch: Mapping[str, Tensor]) -> Tensor | None:
        """The summed loss of the running probes only: a stopped probe costs no forward or
        backward work (its gradient is zero and it is held at its best state); None when
        every probe has stopped."""
        probes = self.running()
        if probes is not None and probes.numel() == 0:
            if not distributed(self):
                return None
            probes = None  # a distributed gradient sync expects every parameter each step
        return self._loss(self(batch["x"], probes), batch["y"], probes)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor | None:
        loss = self.train_loss(batch)
        if loss is None:
            return None  # Lightning skips the step
        self.log(
            "train/loss",
            loss,
            on_epoch=True,
            on_step=False,
            batch_size=len(batch["y"]),
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        logits = self(batch["x"])
        loss = self._loss(logits, batch["y"])
        self.log("val/loss", loss, on_epoch=True, batch_size=len(batch["y"]), sync_dist=True)
        self.val_conf.update(logits.detach(), self.targets(batch["y"]))

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        logits = self(batch["x"])
        loss = self._loss(logits, batch["y"])
        self.log("test/loss", loss, on_epoch=True, batch_size=len(batch["y"]), sync_dist=True)
        self.test_conf.update(logits.detach(), self.targets(batch["y"]))

    @torch.no_grad()
    def stop_probes(self, mask: Tensor) -> None:
        """Stop the probes in ``mask``: their parameters go back to their best state (which
        no later epoch may replace) and stay there."""
        mask = mask.to(self.stopped.device) & ~self.stopped
        if not bool(mask.any()):
            return
        self.stopped |= mask
        self._hold_stopped()

    @torch.no_grad()
    def _hold_stopped(self) -> None:
        has_best = self.stopped & (self.best_epoch >= 0)
        for best, param in zip(self._best_buffers(), self._params(), strict=True):
            param[has_best] = best[has_best].to(param.dtype)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Adam's moments would still move a stopped probe: put it back after every step
        if bool(self.stopped.any()):
            self._hold_stopped()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Adam is element-wise, which keeps probes apart; weight decay is applied per probe
        # in on_before_optimizer_step (AdamW's decoupled decay, one rate per slot)
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.0)

    @torch.no_grad()
    def on_after_backward(self) -> None:
        """The ``l2 / 2 ||W||^2`` penalty of each slot: ``l2 * W`` added to its weights'
        gradients (biases free)."""
        if not bool((self.l2 > 0).any()):
            return
        for name, param in self.probes.named_parameters():
            if "bias" not in name and param.grad is not None:
                scale = self.l2.to(param.device, param.dtype).view(-1, *[1] * (param.dim() - 1))
                param.grad.add_(param.detach() * scale)

    @torch.no_grad()
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """AdamW's decoupled decay ``p <- p (1 - lr wd)``, before the Adam update, per slot
        (at the constant ``lr``: probes have no scheduler)."""
        if not bool((self.weight_decay > 0).any()):
            return
        for param in self.parameters():
            keep = (1 - self.hparams.lr * self.weight_decay.double()).to(param.device, param.dtype)
            param.mul_(keep.view(-1, *[1] * (param.dim() - 1)))

    # ------------------------------------------------------------------ validation / best
    def on_validation_epoch_start(self) -> None:
        self.val_conf.reset()

    def on_validation_epoch_end(self) -> None:
        if self.end_validation():
            # equal on every rank (from the synced confusion): the sync only averages equal values
            self.log("val/acc_best", self.best_val_acc.max(), sync_dist=True)

    def end_validation(self) -> bool:
        """Log the epoch's per-probe val metrics and, while fitting (not in the sanity check,
        not in ``trainer.validate``), move the best states; whether it was fitting."""
        acc, f1 = self.val_conf.accuracy(), self.val_conf.macro_f1()
        self.val_conf.reset()
        metrics = {f"val/acc/{n}": a for n, a in zip(self.probe_names, acc, strict=True)}
        metrics.update({f"val/f1/{n}": v for n, v in zip(self.probe_names, f1, strict=True)})
        self._log_per_probe(metrics)
        # Best state only moves while fitting: not in the sanity check, not in trainer.validate.
        fitting = self.trainer.state.fn == "fit" and not self.trainer.sanity_checking
        if fitting:
            self.update_best(acc, f1, self.current_epoch)
        return fitting

    @torch.no_grad()
    def update_best(self, val_acc: Tensor, val_f1: Tensor, epoch: int) -> Tensor:
        """Snapshot the running probes whose val acc strictly improved (ties keep the earlier
        epoch; stopped probes never change).

        Returns the (P,) bool mask of improved probes.
        """
        val_acc = val_acc.to(self.best_val_acc)
        improved = (val_acc > self.best_val_acc) & ~self.stopped
        if improved.any():
            for best, param in zip(self._best_buffers(), self._params(), strict=True):
                best[improved] = param.detach()[improved].to(best.dtype)
            self.best_val_acc[improved] = val_acc[improved]
            self.best_val_f1[improved] = val_f1.to(self.best_val_f1)[improved]
            self.best_epoch[improved] = epoch
        self.last_improved = improved.cpu()
        return improved

    # ------------------------------------------------------------------ test at best epoch
    def on_test_start(self) -> None:
        """Swap each probe's best-epoch parameters in; :meth:`on_test_end` restores them."""
        if self.trainer.ckpt_path is not None:
            rank_zero_warn(
                "MultiProbe tested from a checkpoint: its per-probe best state is the one saved "
                "at that checkpoint's epoch, which may predate later improvements. Pass the "
                "fitted module with ckpt_path=None to test every probe at its own best epoch."
            )
        self.test_conf.reset()
        has_best = self.best_epoch >= 0  # probes never validated are tested as they are
        self._swapped_out = []
        with torch.no_grad():
            for best, param in zip(self._best_buffers(), self._params(), strict=True):
                self._swapped_out.append(param.detach().clone())
                param[has_best] = best[has_best].to(param.dtype)

    def on_test_epoch_end(self) -> None:
        acc = self.end_test()
        self.log("test/acc_best_probe", acc[int(self.best_val_acc.argmax())], sync_dist=True)

    def end_test(self) -> Tensor:
        """Keep and log the per-probe test metrics; the (P,) test accuracy."""
        acc, f1 = self.test_conf.accuracy(), self.test_conf.macro_f1()
        confmat = self.test_conf.compute()
        self._test_chance = float(confmat[0].sum(-1).max() / confmat[0].sum().clamp_min(1))
        self.test_conf.reset()
        self.test_acc.copy_(acc)
        self.test_f1.copy_(f1)
        metrics = {f"test/acc/{n}": a for n, a in zip(self.probe_names, acc, strict=True)}
        metrics.update({f"test/f1/{n}": v for n, v in zip(self.probe_names, f1, strict=True)})
        self._log_per_probe(metrics)
        return acc

    def _log_per_probe(self, metrics: dict[str, Tensor]) -> None:
        """Epoch-end per-probe values into ``trainer.callback_metrics`` (not into the loggers:
        one history key per probe floods a W&B workspace; the final rows reach W&B as tables).

        ``self.log`` costs ~0.5 ms a key in Lightning's result collection (a device move over
        each entry's state), so 144 heads x 2 metrics took a third of a fused run on CPU
        (bench/fused_vs_separate.py). These values are computed once per epoch from synced
        confusion matrices and need none of its reduction or syncing. Skipped in the sanity
        check, which Lightning does not log either.
        """
        if self.trainer.sanity_checking:
            return
        values = {k: v.detach().cpu() for k, v in metrics.items()}
        self.trainer.callback_metrics.update(values)  # loggers get them as tables at the end

    def on_test_end(self) -> None:
        if self._swapped_out is not None:
            with torch.no_grad():
                for saved, param in zip(self._swapped_out, self._params(), strict=True):
                    param.copy_(saved)
            self._swapped_out = None

    # ------------------------------------------------------------------ report
    def results(self) -> list[dict[str, Any]]:
        """One row per probe: its best-epoch val metrics and its test metrics at that epoch.

        ``chance`` is the constructor's value, else the majority-class rate of the test set.
        """
        chance = self.hparams.chance if self.hparams.chance is not None else self._test_chance

        def _num(t: Tensor) -> float | None:
            v = float(t)
            return None if math.isnan(v) or math.isinf(v) else v

        return [
            {
                "name": name,
                "val_acc": _num(self.best_val_acc[k]),
                "val_f1": _num(self.best_val_f1[k]),
                "best_epoch": int(self.best_epoch[k]),
                "test_acc": _num(self.test_acc[k]),
                "test_f1": _num(self.test_f1[k]),
                "chance": chance,
                "num_params": self.num_params_per_probe,
            }
            for k, name in enumerate(self.probe_names)
        ]


class ProbeGroup(pl.LightningModule):
    """MultiProbes of different shapes (MLP widths, depths, low-rank ranks) or of different
    seeds in one training loop. Their losses add and each member has its own Adam parameter
    group, so every member learns exactly as alone; the group looks like one MultiProbe of
    all their probes to the trainer, the plateau rule and the engine (``probe_names``,
    ``stopped``, ``stop_probes``, :meth:`results`).

    A training batch is one batch, read once and fed to every member, or a list of batches
    (one per seed, each in its seed's order: ``CacheProbeDataModule(seeds=...)``), member
    ``i`` reading ``batch[batch_of[i]]``. Validation and test batches are shared. A member
    whose probes have all stopped takes no work (as its separate run would have ended).
    """

    def __init__(self, members: Sequence[MultiProbe], batch_of: Sequence[int] | None = None):
        super().__init__()
        for i, member in enumerate(members):  # direct children: the trainer reaches them
            self.add_module(f"member{i}", member)
        self.members = list(members)
        self.batch_of = None if batch_of is None else list(batch_of)
        if self.batch_of is not None and len(self.batch_of) != len(self.members):
            raise ValueError(f"need {len(self.members)} batch_of entries, got {self.batch_of}")
        self.probe_names = [n for m in self.members for n in m.probe_names]
        if len(set(self.probe_names)) != len(self.probe_names):
            raise ValueError("probe names must be distinct across the group's members")

    def _running(self) -> list[MultiProbe]:
        return [m for m in self.members if not self._idle(m)]

    def _idle(self, m: MultiProbe) -> bool:
        """Whether ``m`` sits out this fit's steps: every probe of it has stopped. Not under
        a distributed strategy, whose gradient sync expects every parameter each step."""
        if distributed(self) or self.trainer.state.fn != "fit":
            return False
        return bool(m.stopped.all())

    def _run(self, batch: Mapping[str, Tensor], conf: str) -> Tensor:
        total = torch.zeros((), device=batch["x"].device)
        for m in self.members:
            if conf == "val_conf" and self._idle(m):
                continue  # its best state is final: nothing to validate
            logits = m(batch["x"])
            total = total + m._loss(logits, batch["y"])
            getattr(m, conf).update(logits.detach(), m.targets(batch["y"]))
        return total

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        per_member = [batch] * len(self.members)
        if self.batch_of is not None:
            per_member = [batch[i] for i in self.batch_of]
        total = None
        for m, part in zip(self.members, per_member, strict=True):
            loss = m.train_loss(part)
            if loss is not None:
                total = loss if total is None else total + loss
        if total is None:
            return None  # every probe has stopped: Lightning skips the step
        size = len(per_member[0]["y"])
        self.log("train/loss", total, on_epoch=True, on_step=False, batch_size=size, sync_dist=True)
        return total

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        loss = self._run(batch, "val_conf")
        self.log("val/loss", loss, on_epoch=True, batch_size=len(batch["y"]), sync_dist=True)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        loss = self._run(batch, "test_conf")
        self.log("test/loss", loss, on_epoch=True, batch_size=len(batch["y"]), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = [{"params": list(m.parameters()), "lr": m.hparams.lr} for m in self.members]
        return torch.optim.AdamW(groups, weight_decay=0.0)

    # members whose probes have all stopped have no gradient: Adam skips them and so do these
    def on_after_backward(self) -> None:
        for m in self._running():
            m.on_after_backward()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        for m in self._running():
            m.on_before_optimizer_step(optimizer)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for m in self._running():
            m.on_train_batch_end(outputs, batch, batch_idx)

    def on_validation_epoch_start(self) -> None:
        for m in self.members:
            m.on_validation_epoch_start()

    def on_validation_epoch_end(self) -> None:
        fitting = []
        for m in self.members:
            if self._idle(m):  # not validated this epoch: nothing improved
                m.last_improved = torch.zeros(len(m.probe_names), dtype=torch.bool)
                fitting.append(not self.trainer.sanity_checking)
            else:
                fitting.append(m.end_validation())
        if all(fitting):
            self.log("val/acc_best", self._cat("best_val_acc").max(), sync_dist=True)

    def on_test_start(self) -> None:
        for m in self.members:
            m.on_test_start()

    def on_test_epoch_end(self) -> None:
        acc = torch.cat([m.end_test() for m in self.members])
        best = int(self._cat("best_val_acc").argmax())
        self.log("test/acc_best_probe", acc[best], sync_dist=True)

    def on_test_end(self) -> None:
        for m in self.members:
            m.on_test_end()

    def _cat(self, attr: str) -> Tensor:
        return torch.cat([getattr(m, attr).to(self.device) for m in self.members])

    @property
    def stopped(self) -> Tensor:
        return self._cat("stopped")

    @property
    def last_improved(self) -> Tensor:
        return torch.cat([m.last_improved.cpu() for m in self.members])

    def stop_probes(self, mask: Tensor) -> None:
        sizes = [len(m.probe_names) for m in self.members]
        for m, part in zip(self.members, mask.split(sizes), strict=True):
            m.stop_probes(part)

    def results(self) -> list[dict[str, Any]]:
        return [row for m in self.members for row in m.results()]


def distributed(module: pl.LightningModule) -> bool:
    """Whether ``module`` trains under a strategy with several processes."""
    trainer = module._trainer
    return trainer is not None and trainer.world_size > 1


def _per_probe(value: float | Sequence[float], num_probes: int, what: str) -> Tensor:
    """(P,) float64 values from one value or one per probe."""
    values = [float(value)] * num_probes if isinstance(value, int | float) else list(value)
    if len(values) != num_probes or min(values) < 0:
        raise ValueError(f"{what} needs {num_probes} values >= 0, got {value}")
    return torch.tensor(values, dtype=torch.float64)
