"""``data.root`` checked before anything reads or locks under it.

A missing real-data folder used to surface a minute later as a missing features file, with a
lock file left behind; the folder the user typed is what to name. ``data.root=~/data`` built
the demo into ``./~/data``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

#: the data paths a run reads (``data.cache`` is checked where it is opened)
PATH_KEYS = ("root", "flickr30k", "visual_genome", "features", "images", "senteval")


def check_data_root(data: DictConfig) -> None:
    """Refuse a ``~`` path (nothing expands it: the demo was built in a folder named ``~``
    under the working directory) and a ``data=real`` root that is not a folder."""
    for key in PATH_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value.startswith("~"):
            raise ValueError(
                f"data.{key}={value}: '~' is not expanded in a config value; write the full "
                f"path, e.g. data.{key}=$HOME{value[1:]}"
            )
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
