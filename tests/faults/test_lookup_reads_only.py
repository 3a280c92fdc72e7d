"""Computing a cache's fingerprint only reads: uniter-mini is pre-trained by an explicit step.

Before, ``model_sources`` (a lookup of the model's weight files, inside ``fingerprint``) called
``pretrain_from_config``: minutes of training hidden in a hash, without the run saying so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vlprobe.extraction import pipeline
from vlprobe.pretrain import uniter_mini


def test_fingerprint_of_an_untrained_uniter_mini_trains_nothing(
    builder_cfg, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("the fingerprint pre-trained uniter-mini")

    monkeypatch.setattr(uniter_mini, "pretrain", no_training)
    cfg = builder_cfg("flickr30k", model="uniter_mini")
    inputs = pipeline.fingerprint(cfg, "flickr30k")
    ((checkpoint, _),) = pipeline.model_sources(cfg)
    assert checkpoint.name == uniter_mini.CHECKPOINT and not checkpoint.exists()
    assert inputs["files"][str(checkpoint.resolve())] is None  # a missing input, recorded
    assert not (tmp_path / "models").exists()  # nothing written either


def test_ensure_model_pretrains_where_the_fingerprint_looks(builder_cfg) -> None:
    """The explicit step saves the checkpoint the fingerprint then reads (and hashes)."""
    cfg = builder_cfg("flickr30k", model="uniter_mini")
    ((checkpoint, hashed),) = pipeline.model_sources(cfg)
    pipeline.ensure_model(cfg)
    assert hashed and checkpoint.is_file()
    entry = pipeline.fingerprint(cfg, "flickr30k")["files"][str(checkpoint.resolve())]
    assert entry is not None and entry[:2] == [
        checkpoint.stat().st_size,
        checkpoint.stat().st_mtime_ns,
    ]
