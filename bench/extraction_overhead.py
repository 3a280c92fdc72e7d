"""What writing the cache adds to the model's forward passes during ``vlprobe extract``.

The same examples, batch size and model, timed two ways: ``adapter.encode`` over every batch
alone, and the full ``vlprobe.extraction.predict.extract`` (Lightning's predict stage on one
CPU process: encode, reduce every example to units and pairs, write HDF5 in a writer thread
behind a bounded queue). The model is a
random-weight VisualBERT of BERT-base size (12 layers, 768-d, 12 heads, 2048-d region
features) from ``build_adapter``; inputs are Visual-Genome-like (a caption, 10 regions,
3 phrases, 8 relation pairs per image).

    python bench/extraction_overhead.py            # 96 examples, BERT-base size
    python bench/extraction_overhead.py --quick    # tiny model, smoke test
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from _common import add_common_args, finish, print_table, quiet, set_threads, timed

TARGET = 0.15
CAPTION = "a man in a red shirt rides a brown horse along the beach near the blue water"
PREDICATES = ("on", "near", "holding", "wearing")


def make_examples(n: int, regions: int, feature_dim: int, seed: int = 0) -> list[Any]:
    """Visual-Genome-like examples: caption, detector regions, phrases and relation pairs."""
    from vlprobe.data.examples import PhraseSpan, Region, RelationPair, VLExample
    from vlprobe.data.types import Box
    from vlprobe.models.base import ModelInput

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x1 = rng.uniform(0, 300, regions)
        y1 = rng.uniform(0, 200, regions)
        boxes = np.stack([x1, y1, x1 + 80, y1 + 60], axis=1).astype(np.float32)
        inputs = ModelInput(
            words=CAPTION.split(),
            region_features=rng.standard_normal((regions, feature_dim), dtype=np.float32),
            region_boxes=boxes,
            image_size=(400, 300),
        )
        gold = [
            Region(r, Box(*map(float, boxes[r])), f"thing{r % 5}", f"obj{r}")
            for r in range(regions)
        ]
        phrases = [
            PhraseSpan(0, 2, ("people",), "c0", (0,)),
            PhraseSpan(4, 6, ("clothing",), "c1", (1,)),
            PhraseSpan(7, 10, ("animals",), "c2", (2,)),
        ]
        relations = [
            RelationPair(s, (s + 1 + int(rng.integers(regions - 1))) % regions, p)
            for s, p in zip(range(8), [*PREDICATES, *[None] * 4], strict=True)
        ]
        split = "train" if i % 10 < 8 else ("val" if i % 10 == 8 else "test")
        out.append(VLExample(f"img{i}#0", f"img{i}", split, inputs, gold, phrases, relations))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--examples", type=int, default=None, help="default 96 (quick: 16)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes of each; best kept")
    args = parser.parse_args(argv)
    quiet()
    set_threads(args.threads)
    from vlprobe.extraction.predict import extract
    from vlprobe.testing.models import build_adapter, tiny_config

    if args.quick:
        config = tiny_config("visualbert", feature_dim=32)
        n = args.examples or 16
    else:
        config = {
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "visual_embedding_dim": 2048,
        }
        n = args.examples or 96
    adapter = build_adapter("visualbert", random_init=True, config=config)
    examples = make_examples(n, regions=10, feature_dim=int(config["visual_embedding_dim"]))
    batches = [examples[i : i + args.batch_size] for i in range(0, n, args.batch_size)]
    out_dir = args.workdir / "extraction"
    out_dir.mkdir(parents=True, exist_ok=True)
    adapter.encode([ex.inputs for ex in batches[0]])  # warm-up: allocator, kernels

    encode_s, extract_s = [], []
    size = 0
    for rep in range(args.repeats):
        with timed() as t:
            for batch in batches:
                adapter.encode([ex.inputs for ex in batch])
        encode_s.append(t.wall)
        path = out_dir / f"bench_{rep}.h5"
        path.unlink(missing_ok=True)
        with timed() as t:
            extract(
                examples,
                adapter,
                path,
                {"dataset_kind": "visual_genome"},
                args.batch_size,
                progress=False,
            )
        extract_s.append(t.wall)
        size = path.stat().st_size
    enc, ext = min(encode_s), min(extract_s)
    overhead = ext / enc - 1
    row = {
        "examples": n,
        "model": f"VisualBERT {config['num_hidden_layers']}x{config['hidden_size']}",
        "encode_s": enc,
        "extract_s": ext,
        "overhead": overhead,
        "target": TARGET,
        "met": overhead <= TARGET,
        "cache_MiB": size / 2**20,
        "write_MBps": size / ext / 1e6,
    }
    print_table(f"extraction overhead (batch {args.batch_size}, {args.threads} thread(s))", [row])
    return finish(
        args,
        "extraction_overhead",
        {"row": row, "all_encode_s": encode_s, "all_extract_s": extract_s},
    )


if __name__ == "__main__":
    main()
