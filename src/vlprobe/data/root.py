"""``data.root`` checked before anything reads or locks under it.

A missing real-data folder used to surface a minute later as a missing features file, with a
lock file left behind; the folder the user typed is what to name.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def check_data_root(data: DictConfig) -> None:
    """Refuse a ``data=real`` root that is not a folder (the demo builds its own)."""
    if data.get("make_demo") or not data.get("root"):
        return
    root = Path(data.root)
    if not root.exists():
        raise FileNotFoundError(
            f"data.root={root} does not exist: point it at the folder holding your copies of "
            "the data sets (flickr30k_entities/, visual_genome/, features/, senteval/; README, "
            "'Real data'), or drop data=real for the demo"
        )
    if not root.is_dir():
        raise NotADirectoryError(f"data.root={root} is a file: give the folder holding the data")
