"""The block sampler split across ranks: disjoint blocks, equal training steps, no eval repeats."""

from __future__ import annotations

import pytest

from datamodules.samplers import BlockBatchSampler


def _epoch(num_replicas: int, rank: int, shuffle: bool) -> list[list[int]]:
    sampler = BlockBatchSampler(103, 10, shuffle, 4, num_replicas=num_replicas, rank=rank)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    return batches


@pytest.mark.parametrize("shuffle", [True, False])
def test_one_replica_is_the_single_process_sampler(shuffle: bool) -> None:
    single = list(BlockBatchSampler(103, 10, shuffle=shuffle, seed=4))
    assert _epoch(1, 0, shuffle) == single


def test_training_ranks_take_disjoint_blocks_padded_to_equal_steps() -> None:
    single = list(BlockBatchSampler(103, 10, shuffle=True, seed=4))  # 11 shuffled blocks
    ranks = [_epoch(3, r, shuffle=True) for r in range(3)]
    assert [len(b) for b in ranks] == [4, 4, 4]  # DDP needs the same number of steps
    assert ranks[0] == single[0::3] and ranks[1] == single[1::3]
    assert ranks[2] == [*single[2::3], single[0]]  # padded with the permutation's first block
    assert all(max(b) - min(b) < 10 for r in ranks for b in r)  # still one block per batch
    seen = sorted(i for batches in ranks for b in batches for i in b)
    assert set(seen) == set(range(103)) and len(seen) == 103 + len(single[0])


def test_evaluation_ranks_read_contiguous_slices_every_row_once() -> None:
    ranks = [_epoch(3, r, shuffle=False) for r in range(3)]
    assert [b[0][0] for b in ranks] == [0, 34, 68]  # 103 rows: 34 + 34 + 35
    rows = [i for batches in ranks for b in batches for i in b]
    assert rows == list(range(103))
    assert all(len(b) <= 10 for r in ranks for b in r)


def test_rank_must_be_one_of_the_replicas() -> None:
    with pytest.raises(ValueError, match="rank 2 outside 0..1"):
        BlockBatchSampler(10, 2, True, num_replicas=2, rank=2)


def test_seeds_sampler_gives_each_seed_its_own_batches_every_epoch() -> None:
    """Several seeds in one loop: step i holds seed s's i-th batch of its separate run."""
    from datamodules.samplers import SeedsBatchSampler

    seeds = [1, 2, 3]
    together = SeedsBatchSampler([BlockBatchSampler(103, 10, True, s) for s in seeds])
    alone = [BlockBatchSampler(103, 10, True, s) for s in seeds]
    for _ in range(2):  # the epoch counters advance as in separate runs
        steps = list(together)
        assert len(steps) == len(together) == 11
        assert [[step[k] for step in steps] for k in range(3)] == [list(a) for a in alone]
    assert steps[0][0] != steps[0][1]  # the seeds' orders differ
    with pytest.raises(ValueError, match="same number of steps"):
        SeedsBatchSampler([BlockBatchSampler(103, 10, True, 1), BlockBatchSampler(99, 10, True, 1)])
