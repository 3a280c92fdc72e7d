"""LightningDataModules that stream probe features from the vlprobe activation cache."""

from datamodules.cache_datamodule import BlockBatchSampler, CacheProbeDataModule
from datamodules.views import FeatureView, PairAttentionView, UnitEmbeddingView

__all__ = [
    "BlockBatchSampler",
    "CacheProbeDataModule",
    "FeatureView",
    "PairAttentionView",
    "UnitEmbeddingView",
]
