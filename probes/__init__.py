"""Probe engine: many probes (per layer or per head) trained in one batched pass."""

from probes.callbacks import AllProbesPlateau
from probes.metrics import MultiProbeConfusion
from probes.multi_probe import MultiProbe

__all__ = ["AllProbesPlateau", "MultiProbe", "MultiProbeConfusion"]
