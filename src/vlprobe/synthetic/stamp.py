"""The demo data folder is the demo builder's own: stamps say so, and which settings wrote it.

``OWNER`` is written before the first data file, ``DONE`` (with the settings) after the last.
The builder writes only into an empty folder or one holding its stamps, and refuses any other:
``data.root=/my/real/data`` without ``data=real`` must never overwrite real files. Changing
``data.scenes`` or upgrading vlprobe rebuilds (the settings differ), never reusing old files.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from vlprobe import __version__
from vlprobe.cache.lock import exclusive_lock, lock_path_for

log = logging.getLogger(__name__)

STAMP = "DONE"
OWNER = ".vlprobe-demo"


def demo_settings(scenes: int, seed: int, feature_dim: int) -> dict[str, object]:
    return {"vlprobe": __version__, "scenes": scenes, "seed": seed, "feature_dim": feature_dim}


def write_stamp(root: Path, settings: dict[str, object]) -> None:
    """Written last: a folder without it (an interrupted build) is rebuilt."""
    (Path(root) / STAMP).write_text(json.dumps(settings, sort_keys=True) + "\n")


def is_current(root: Path, settings: dict[str, object]) -> bool:
    path = Path(root) / STAMP
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(settings))
    except json.JSONDecodeError:
        return False


def claim(root: Path) -> None:
    """Make ``root`` the demo builder's own; refuse a folder that holds anything else."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"demo data folder {root} is a file: give data.root a folder")
    owned = (root / OWNER).exists() or (root / STAMP).exists()
    if not owned and root.exists() and any(root.iterdir()):
        raise ValueError(
            f"data.root={root} holds files that are not vlprobe demo data, and the demo builder "
            "would overwrite them: for your own data add data=real (python train_probe.py "
            f"data=real data.root={root}); for the demo give an empty or new folder"
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / OWNER).write_text("written by vlprobe's demo builder: it may overwrite this folder\n")


def clear_old_build(root: Path) -> None:
    """Remove a previous build: one with more scenes left its extra images' files behind,
    which readers and content hashes would take for data of this build."""
    keep = {OWNER, lock_path_for(root / OWNER).name}
    for child in root.iterdir():
        if child.name in keep:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def build_demo(
    root: Path, scenes: int, seed: int, feature_dim: int, force: bool = False, **kwargs: object
) -> bool:
    """Write the demo set at ``root`` unless it is current (or ``force``); returns whether it
    wrote. One builder at a time: a second one waits, then finds the folder current."""
    from vlprobe.synthetic.demo import make_demo_data

    root = Path(root)
    settings = demo_settings(scenes, seed, feature_dim)
    if not force and is_current(root, settings):
        return False
    claim(root)
    with exclusive_lock(root / OWNER, what=f"the demo data at {root}"):
        if not force and is_current(root, settings):
            return False
        (root / STAMP).unlink(missing_ok=True)
        clear_old_build(root)
        log.info("building the demo data set (%d scenes) at %s", scenes, root)
        make_demo_data(root, scenes=scenes, seed=seed, feature_dim=feature_dim, **kwargs)
        write_stamp(root, settings)
    return True
