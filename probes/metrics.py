"""Per-probe classification metrics for many probes evaluated on the same batches."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def accuracy_from_confusion(confmat: Tensor) -> Tensor:
    """Micro accuracy per probe from a (P, C, C) [probe, target, pred] confusion tensor."""
    total = confmat.sum(dim=(-2, -1))
    correct = confmat.diagonal(dim1=-2, dim2=-1).sum(-1)
    return correct.double().div(total.clamp_min(1)).float()


def macro_f1_from_confusion(confmat: Tensor) -> Tensor:
    """Macro-F1 per probe, matching ``MulticlassF1Score(average="macro")``.

    As in torchmetrics, a class that appears in neither targets nor predictions (tp + fp + fn
    == 0) is left out of the mean, and a class with an undefined F1 otherwise counts as 0.
    """
    cm = confmat.double()
    tp = cm.diagonal(dim1=-2, dim2=-1)
    fp = cm.sum(-2) - tp  # predicted c, target not c
    fn = cm.sum(-1) - tp  # target c, predicted not c
    denom = 2 * tp + fp + fn
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))
    present = (denom > 0).double()
    return ((f1 * present).sum(-1) / present.sum(-1).clamp_min(1)).float()


class MultiProbeConfusion(Metric):
    """A (P, C, C) confusion tensor for P probes, so one metric object serves all probes.

    One metric with one summed state keeps distributed syncing to a single all-reduce,
    however many probes (e.g. 144 heads) are trained. Rows are targets, columns predictions.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: Tensor

    def __init__(self, num_probes: int, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_probes < 1 or num_classes < 2:
            raise ValueError("need num_probes >= 1 and num_classes >= 2")
        self.num_probes = num_probes
        self.num_classes = num_classes
        self.add_state(
            "confmat",
            default=torch.zeros(num_probes, num_classes, num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch: ``preds`` (B, P) labels or (B, P, C) scores; ``target`` (B,) or (B, P)."""
        if preds.is_floating_point():
            preds = preds.argmax(-1)
        if preds.ndim != 2 or preds.shape[1] != self.num_probes:
            raise ValueError(f"preds must be (B, {self.num_probes}), got {tuple(preds.shape)}")
        if target.ndim == 1:
            target = target.unsqueeze(1).expand_as(preds)
        p, c = self.num_probes, self.num_classes
        probe_idx = torch.arange(p, device=preds.device).unsqueeze(0)
        flat = (probe_idx * c + target.long()) * c + preds.long()
        # bincount without weights is deterministic on CUDA.
        self.confmat += torch.bincount(flat.reshape(-1), minlength=p * c * c).view(p, c, c)

    def compute(self) -> Tensor:
        """The synced (P, C, C) confusion tensor."""
        return self.confmat

    def accuracy(self) -> Tensor:
        """(P,) accuracy (micro, i.e. fraction correct) per probe."""
        return accuracy_from_confusion(self.compute())

    def macro_f1(self) -> Tensor:
        """(P,) macro-F1 per probe."""
        return macro_f1_from_confusion(self.compute())
