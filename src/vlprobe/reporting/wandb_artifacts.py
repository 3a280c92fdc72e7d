"""W&B artifacts with lineage: what a run produced and which cache it read.

The ``results`` artifact holds the run's results.json/csv and figures. Each cache the run read
is a reference artifact (the file stays where it is; W&B records its path) named after the
cache's fingerprint, so every run that read the same cache points at the same artifact. Online
runs *use* it (an input edge in the lineage graph); offline runs cannot use artifacts
(``wandb`` refuses), so they log it, and ``wandb sync`` files the runs that logged the same
reference under one artifact version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlprobe.cache.reader import CacheReader
from vlprobe.hashing import text_sha256


def cache_fingerprint(reader: CacheReader) -> tuple[str, str]:
    """``(sha256, what it covers)``: of the cache's ``input_fingerprint`` (every input file and
    builder setting, docs/cache_format.md), or of the file's size and mtime for caches without
    one (written by hand or by tests)."""
    if "input_fingerprint" in reader.file.attrs:
        text = str(reader.attr("input_fingerprint"))
        return text_sha256(text), "input_fingerprint"
    stat = Path(reader.path).stat()
    text = f"{Path(reader.path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return text_sha256(text), "file path, size and mtime"


def cache_artifact(reader: CacheReader, role: str, dataset: str) -> Any:
    """A reference artifact ``cache-<dataset>-<fingerprint[:16]>`` to the cache file (no
    checksum: caches are GBs and their fingerprint already says what they hold)."""
    import wandb

    digest, covers = cache_fingerprint(reader)
    path = Path(reader.path).resolve()
    artifact = wandb.Artifact(
        name=_artifact_name(f"cache-{dataset}-{digest[:16]}"),
        type="cache",
        description=f"the {dataset} cache a run read ({role})",
        metadata={
            "fingerprint": digest,
            "fingerprint_of": covers,
            "path": str(path),
            "dataset": dataset,
            "role": role,
            "model": _attr(reader, "model_name"),
        },
    )
    artifact.add_reference(path.as_uri(), name=path.name, checksum=False)
    return artifact


def results_artifact(name: str, files: Iterable[Path], metadata: dict[str, Any]) -> Any:
    """The ``results`` artifact: results.json/csv and figures (missing files left out)."""
    import wandb

    artifact = wandb.Artifact(name=_artifact_name(name), type="results", metadata=metadata)
    for path in dict.fromkeys(Path(p) for p in files):
        if path.is_file():
            artifact.add_file(str(path), name=path.name)
    return artifact


def log_lineage(
    experiment: Any,
    readers: dict[str, dict[str, CacheReader]],
    results: Iterable[Path],
    name: str,
    metadata: dict[str, Any],
) -> None:
    """Record the caches read (used online, logged offline) and log the results as a new
    version of the ``results-<name>`` artifact."""
    offline = bool(getattr(experiment, "offline", False))
    for role, by_dataset in readers.items():
        for dataset, reader in by_dataset.items():
            artifact = cache_artifact(reader, role, dataset)
            if offline:
                experiment.log_artifact(artifact)
            else:
                experiment.use_artifact(artifact)
    experiment.log_artifact(results_artifact(f"results-{name}", results, metadata))


def _attr(reader: CacheReader, key: str) -> str | None:
    return str(reader.attr(key)) if key in reader.file.attrs else None


def _artifact_name(text: str) -> str:
    """W&B artifact names: letters, digits, dashes, underscores and dots."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)
