"""LightningDataModules that stream probe features from the vlprobe activation cache."""

from datamodules.cache_datamodule import CacheProbeDataModule
from datamodules.samplers import BlockBatchSampler
from datamodules.views import FeatureView, PairAttentionView, UnitEmbeddingView

__all__ = [
    "BlockBatchSampler",
    "CacheProbeDataModule",
    "FeatureView",
    "PairAttentionView",
    "UnitEmbeddingView",
]
