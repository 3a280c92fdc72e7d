"""``make_demo_data``: the whole VALUE-mini data set, written in the real file formats.

Everything downstream reads it with the same readers as real data, so the demo exercises the
one code path real runs take. Deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlprobe.synthetic.features import write_features
from vlprobe.synthetic.flickr_writer import write_flickr30k
from vlprobe.synthetic.images import write_images
from vlprobe.synthetic.scenes import sample_scenes
from vlprobe.synthetic.senteval_writer import write_senteval
from vlprobe.synthetic.vg_writer import write_visual_genome


@dataclass(frozen=True)
class DemoDataPaths:
    """Where each part of the demo data lives (the roots the readers take)."""

    flickr30k: Path  # Flickr30k Entities root: Sentences/, Annotations/, {train,val,test}.txt
    visual_genome: Path  # objects.json, relationships.json, image_data.json
    features: Path  # BUTD TSV of region features for every image
    images: Path  # <image_id>.png (absent files when render_images=False)
    senteval: Path  # the ten SentEval probing files


def make_demo_data(
    out: Path,
    scenes: int = 300,
    seed: int = 0,
    feature_dim: int = 2048,
    image_size: int = 384,
    senteval_per_task: int = 600,
    render_images: bool = True,
) -> DemoDataPaths:
    """Write VALUE-mini under ``out``: Flickr30k Entities, Visual Genome, BUTD features,
    rendered images (optional) and SentEval, all for the same ``scenes`` images."""
    out = Path(out)
    paths = DemoDataPaths(
        flickr30k=out / "flickr30k",
        visual_genome=out / "visual_genome",
        features=out / "features" / "butd.tsv",
        images=out / "images",
        senteval=out / "senteval",
    )
    world = sample_scenes(scenes, seed, image_size)
    write_flickr30k(paths.flickr30k, world, seed)
    write_visual_genome(paths.visual_genome, world, seed)
    write_features(paths.features, world, seed, feature_dim)
    if render_images:
        write_images(paths.images, world)
    else:
        paths.images.mkdir(parents=True, exist_ok=True)
    write_senteval(paths.senteval, senteval_per_task, seed)
    return paths
