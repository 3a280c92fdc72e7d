"""Word-region alignment: the IPOT plan against an exact optimal transport."""

from __future__ import annotations

import itertools

import torch

from vlprobe.pretrain.wra import ipot, ot_distance


def test_plan_has_uniform_marginals_and_finds_the_cheapest_matching() -> None:
    torch.manual_seed(0)
    cost = torch.rand(1, 4, 4) + 0.5
    best = min(
        itertools.permutations(range(4)), key=lambda p: sum(cost[0, i, j] for i, j in enumerate(p))
    )
    for i, j in enumerate(best):
        cost[0, i, j] = 0.0  # a clear optimum: the permutation matrix / 4
    plan = ipot(cost, torch.ones(1, 4), torch.ones(1, 4), beta=0.05, iterations=200)
    torch.testing.assert_close(plan.sum(2), torch.full((1, 4), 0.25), atol=1e-4, rtol=0)
    torch.testing.assert_close(plan.sum(1), torch.full((1, 4), 0.25), atol=1e-4, rtol=0)
    expected = torch.zeros(1, 4, 4)
    expected[0, range(4), list(best)] = 0.25
    torch.testing.assert_close(plan, expected, atol=2e-3, rtol=0)


def test_padding_gets_no_mass_and_distance_is_cosine_under_the_plan() -> None:
    # [CLS]-like first word and a last region left out (as WRA leaves out [CLS] and [SEP])
    words = torch.tensor([[[5.0, 5.0], [1.0, 0.0], [0.0, 1.0]]])
    regions = torch.tensor([[[0.0, 2.0], [3.0, 0.0], [1.0, 1.0]]])
    word_mask, region_mask = torch.tensor([[0, 1, 1]]), torch.tensor([[1, 1, 0]])
    cost = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    plan = ipot(cost, word_mask, region_mask, beta=0.05, iterations=200)
    assert plan[0, 0].abs().sum() == 0 and plan[0, :, 2].abs().sum() == 0
    torch.testing.assert_close(plan.sum(), torch.tensor(1.0))
    # word 0 points like region 1, word 1 like region 0: distance 0 under the best plan
    assert ot_distance(words, regions, word_mask, region_mask).item() < 1e-3
    # negated regions: costs [[1, 2], [2, 1]], best plan the diagonal, 1/2 * 1 + 1/2 * 1
    distance = ot_distance(words, -regions, word_mask, region_mask).item()
    assert abs(distance - 1.0) < 1e-3
