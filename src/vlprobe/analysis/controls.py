"""Control tasks and selectivity (Hewitt & Liang 2019, "Designing and Interpreting Probes").

A control task keeps the input but replaces the label of each *type* (a word, a phrase string,
a region category) by one fixed random label drawn from the empirical label distribution. A
probe can only solve it by memorising types, so selectivity = task accuracy - control accuracy
separates what the representation encodes from what the probe learns by itself.

That only holds when the control task is learnable: its types must recur between training and
test data (an unseen type's label cannot be memorised) and the probe must be able to tell the
types apart. ``lookup_ceiling`` gives the best test accuracy any probe can reach on a control:
a type -> label lookup built on the training rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def control_labels(
    types: Sequence[Hashable] | np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    seed: int = 0,
) -> np.ndarray:
    """One fixed random label per distinct type, drawn from the distribution of ``labels``.

    Types are numbered in first-seen order, so the result depends on the input order and the
    seed only. Call it once over all splits together, so that a type has the same control label
    in training and test data.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(types) != len(labels):
        raise ValueError("types and labels must have the same length")
    if len(labels) == 0:
        return labels.copy()
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    dist = np.bincount(labels, minlength=num_classes) / len(labels)
    ids: dict[Hashable, int] = {}
    type_id = np.array([ids.setdefault(_key(t), len(ids)) for t in types], dtype=np.int64)
    rng = np.random.default_rng(seed)
    per_type = rng.choice(num_classes, size=len(ids), p=dist)
    return per_type[type_id].astype(np.int64)


def _key(t: Hashable) -> Hashable:
    """numpy scalars and 0-d arrays as plain Python values, so 3 and np.int64(3) match."""
    return t.item() if isinstance(t, np.generic) else t


def shuffled_labels(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded permutation of ``labels``: same label counts, no relation to the input."""
    return np.random.default_rng(seed).permutation(np.asarray(labels))


def selectivity(task_acc: float | np.ndarray, control_acc: float | np.ndarray) -> np.ndarray:
    """Task accuracy minus control accuracy (element-wise; per layer or per head)."""
    return np.subtract(np.asarray(task_acc, dtype=np.float64), control_acc)


def lookup_ceiling(
    types: np.ndarray, control: np.ndarray, split: np.ndarray, train: int = 0, test: int = 2
) -> dict[str, float]:
    """Test accuracy of a type -> control-label lookup learnt on the training rows.

    Args:
        types: ``(N,)`` type id of each row; control: ``(N,)`` its control label (-1 = unused);
        split: ``(N,)`` split id of each row.

    Returns:
        ``ceiling``: accuracy on the test rows when a seen type gets its (fixed) control label
        and an unseen type the majority training label; ``recurrence``: the fraction of test
        rows whose type occurs in training. NaN without training or test rows.
    """
    types, control, split = (np.asarray(a).reshape(-1) for a in (types, control, split))
    used = control >= 0
    tr, te = used & (split == train), used & (split == test)
    if not tr.any() or not te.any():
        return {"ceiling": float("nan"), "recurrence": float("nan")}
    lookup = dict(zip(types[tr].tolist(), control[tr].tolist(), strict=True))
    majority = int(np.bincount(control[tr]).argmax())
    guess = np.array([lookup.get(t, majority) for t in types[te].tolist()])
    seen = np.array([t in lookup for t in types[te].tolist()])
    return {"ceiling": float(np.mean(guess == control[te])), "recurrence": float(seen.mean())}
