"""Cache size of LXMERT's streams: the cross stream alone vs every stream in one cache.

For each data set, the cache a task builds (its parts) with ``model.stream=cross`` and with
``model.stream=all``: bytes of data per example, per stream, and the file size per example.
Demo data (``model=lxmert_small``; ``--quick``: 16 scenes, Visual Genome only) written under
``--workdir``.

    python bench/lxmert_stream_sizes.py
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import h5py
from _common import add_common_args, compose_cfg, finish, print_table, quiet

# data set -> the parts of the task that reads it
READS = {
    "visual_genome": ("region", "relation"),  # visual_relation
    "flickr30k": ("phrase", "region", "coref"),  # visual_coreference
    "senteval/past_present": ("sentence",),  # linguistic/past_present
}


def data_bytes(path: Path) -> tuple[int, dict[str, int]]:
    """Examples, and bytes of every dataset per stream group (``-``: a one-sequence file)."""
    totals: dict[str, int] = {}
    examples = 0

    def visit(name: str, obj: object) -> None:
        nonlocal examples
        if isinstance(obj, h5py.Dataset):
            group = name.split("/")[1] if name.startswith("streams/") else "-"
            totals[group] = totals.get(group, 0) + obj.size * obj.dtype.itemsize
            if name.endswith("examples/split"):
                examples = obj.shape[0]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return examples, totals


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    args = parser.parse_args(argv)
    quiet()
    from vlprobe.extraction.pipeline import ensure_cache

    scenes = 16 if args.quick else 300
    datasets = ["visual_genome"] if args.quick else list(READS)  # quick: a smoke test
    rows = []
    for dataset in datasets:
        parts = READS[dataset]
        row: dict[str, Any] = {"data set": dataset}
        for stream in ("cross", "all"):
            overrides = [
                "model=lxmert_small",
                f"model.stream={stream}",
                f"data.root={args.workdir / f'lxmert-demo-{scenes}'}",
                f"data.scenes={scenes}",
                f"paths.cache_dir={args.workdir / 'lxmert-caches'}",
                "extraction.progress=false",
            ]
            path = ensure_cache(compose_cfg(overrides, args.workdir / "run"), dataset, parts)
            examples, totals = data_bytes(path)
            row[f"{stream}: data KiB/ex"] = sum(totals.values()) / examples / 1024
            row[f"{stream}: file KiB/ex"] = path.stat().st_size / examples / 1024
            if stream == "all":
                for name in ("language", "vision"):
                    row[f"{name} KiB/ex"] = totals.get(name, 0) / examples / 1024
        row["data ratio"] = row["all: data KiB/ex"] / row["cross: data KiB/ex"]
        row["file ratio"] = row["all: file KiB/ex"] / row["cross: file KiB/ex"]
        rows.append(row)
    print_table("LXMERT cache per example: cross stream alone vs all streams", rows)
    return finish(args, "lxmert_stream_sizes", {"rows": rows})


if __name__ == "__main__":
    main()
