"""The leakage guard fires on a constructed leaking split and names the group."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from vlprobe.cache.leakage import LeakageError, check_no_leakage, leaking_groups
from vlprobe.cache.reader import CacheReader
from vlprobe.testing.planted import write_planted_relation_cache


def test_leaking_groups_by_hand() -> None:
    groups = np.array(["a", "b", "a", "c", "c"], dtype=object)
    splits = np.array([0, 0, 2, 1, 1])
    assert leaking_groups(groups, splits) == {"a": ["train", "test"]}


def test_guard_passes_clean_and_fires_on_leak(tmp_path: Path) -> None:
    path = write_planted_relation_cache(tmp_path / "p.h5", num_images=20)
    check_no_leakage(CacheReader(path))  # split by image: clean
    with h5py.File(path, "r+") as f:  # image 9 (test) gets the group id of image 0 (train)
        groups = f["examples/group"][()]
        split = f["examples/split"][()]
        test_row = int(np.flatnonzero(split == 2)[0])
        f["examples/group"][test_row] = groups[0]
    with pytest.raises(LeakageError, match="'img0' in train, test"):
        check_no_leakage(CacheReader(path))
