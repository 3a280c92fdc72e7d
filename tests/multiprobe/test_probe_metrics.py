"""MultiProbeConfusion must agree with torchmetrics' own multiclass metrics, probe by probe."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from probes import MultiProbeConfusion


@pytest.mark.parametrize("num_classes", [2, 5])
def test_matches_torchmetrics_per_probe(num_classes: int) -> None:
    g = torch.Generator().manual_seed(0)
    num_probes, n = 4, 97
    metric = MultiProbeConfusion(num_probes, num_classes)
    refs_acc = [MulticlassAccuracy(num_classes, average="micro") for _ in range(num_probes)]
    refs_f1 = [MulticlassF1Score(num_classes, average="macro") for _ in range(num_probes)]
    for _ in range(3):  # several updates, as over batches
        logits = torch.randn(n, num_probes, num_classes, generator=g)
        target = torch.randint(0, num_classes, (n,), generator=g)
        metric.update(logits, target)
        for k in range(num_probes):
            refs_acc[k].update(logits[:, k], target)
            refs_f1[k].update(logits[:, k], target)
    acc, f1 = metric.accuracy(), metric.macro_f1()
    assert acc.shape == f1.shape == (num_probes,)
    for k in range(num_probes):
        assert acc[k].item() == pytest.approx(refs_acc[k].compute().item(), abs=1e-6)
        assert f1[k].item() == pytest.approx(refs_f1[k].compute().item(), abs=1e-6)


def test_absent_classes_match_torchmetrics() -> None:
    """Classes in neither preds nor targets drop out of the macro mean, as in torchmetrics."""
    num_classes = 6
    preds = torch.tensor([[0, 1], [0, 0], [1, 2], [2, 2], [0, 5]])  # (B=5, P=2) labels
    target = torch.tensor([0, 0, 1, 2, 0])
    metric = MultiProbeConfusion(2, num_classes)
    metric.update(preds, target)
    for k in range(2):
        ref_f1 = MulticlassF1Score(num_classes, average="macro")(preds[:, k], target)
        ref_acc = MulticlassAccuracy(num_classes, average="micro")(preds[:, k], target)
        assert metric.macro_f1()[k].item() == pytest.approx(ref_f1.item(), abs=1e-6)
        assert metric.accuracy()[k].item() == pytest.approx(ref_acc.item(), abs=1e-6)


def test_per_probe_targets_and_reset() -> None:
    metric = MultiProbeConfusion(2, 3)
    metric.update(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 0], [2, 1]]))
    assert metric.accuracy().tolist() == [1.0, 0.0]
    assert metric.compute().sum().item() == 4
    metric.reset()
    assert metric.confmat.sum().item() == 0
    with pytest.raises(ValueError):
        metric.update(torch.zeros(3, 5, dtype=torch.long), torch.zeros(3, dtype=torch.long))
