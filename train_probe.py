"""Train VALUE probes on a frozen V+L model: ``python train_probe.py task=visual_relation``.

Configured by Hydra (configs/train_probe.yaml); see README for tasks, sweeps and real data.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from vlprobe.config import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="train_probe")
def main(cfg: DictConfig) -> float | None:
    from probes.run import run
    from vlprobe.cache.reader import CacheError

    try:
        return run(cfg)
    except (FileNotFoundError, ValueError, CacheError) as err:
        # bad input (a path, a data file, a setting): one line naming it, and a failing exit
        print(f"train_probe: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
