"""UNITER's word-region alignment (WRA): optimal transport between words and regions.

The transport plan ``T`` between a caption's word states and its image's region states is
found by the inexact proximal point method (IPOT, Xie et al. 2019) on the cosine distance
``C``, as in UNITER's ``model/ot.py``; the distance ``<C, T>`` is minimised for matched
pairs and maximised for mismatched ones, so words end up close to the regions they name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ipot(
    cost: torch.Tensor,
    word_mask: torch.Tensor,
    region_mask: torch.Tensor,
    beta: float = 0.5,
    iterations: int = 50,
) -> torch.Tensor:
    """(B, m, n) plan with uniform marginals over the valid words (m) and regions (n)."""
    rows, cols = word_mask.to(cost.dtype), region_mask.to(cost.dtype)
    valid = rows[:, :, None] * cols[:, None, :]
    m_len = rows.sum(1, keepdim=True).clamp(min=1)
    n_len = cols.sum(1, keepdim=True).clamp(min=1)
    kernel = torch.exp(-cost / beta) * valid
    plan = valid.clone()
    sigma = cols / n_len
    for _ in range(iterations):
        q = kernel * plan
        delta = rows / (m_len * (q @ sigma[..., None])[..., 0]).clamp(min=1e-30)
        sigma = cols / (n_len * (delta[:, None] @ q)[:, 0]).clamp(min=1e-30)
        plan = delta[..., None] * q * sigma[:, None]
    return plan


def ot_distance(
    words: torch.Tensor, regions: torch.Tensor, word_mask: torch.Tensor, region_mask: torch.Tensor
) -> torch.Tensor:
    """(B,) ``<C, T>``: cosine distance under the IPOT plan (the plan gets no gradient)."""
    cost = 1 - F.normalize(words, dim=-1) @ F.normalize(regions, dim=-1).transpose(1, 2)
    with torch.no_grad():
        plan = ipot(cost.detach(), word_mask, region_mask)
    return (cost * plan).sum((1, 2))
