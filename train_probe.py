"""Train VALUE probes on a frozen V+L model: ``python train_probe.py task=visual_relation``.

Configured by Hydra (configs/train_probe.yaml); see README for tasks, sweeps and real data.
The app itself is :mod:`vlprobe.train_probe`, which ``vlprobe train`` runs too.
"""

from __future__ import annotations

from vlprobe.train_probe import cli, exit_bad_input, main

__all__ = ["cli", "exit_bad_input", "main"]

if __name__ == "__main__":
    cli()
