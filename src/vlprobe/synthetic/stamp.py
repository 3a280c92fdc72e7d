"""The demo data folder is the demo builder's own: a manifest says so, and which files it wrote.

``OWNER`` (the manifest) is written before the first data file, naming the top-level entries
the build writes; after the last one it lists every file written, and ``DONE`` (with the
settings) follows. The builder writes only into an empty or new folder, or one whose manifest
accounts for everything in it; anything else is refused and nothing is deleted: a ``DONE``
file alone proves nothing (``data.root=/my/real/data`` without ``data=real`` must never
overwrite real files). Changing ``data.scenes`` or upgrading vlprobe rebuilds (the settings
differ), never reusing old files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from vlprobe import __version__
from vlprobe.cache.lock import exclusive_lock, lock_path_for

log = logging.getLogger(__name__)

STAMP = "DONE"
OWNER = ".vlprobe-demo"
#: the top-level entries ``make_demo_data`` writes (its DemoDataPaths)
ENTRIES = ("flickr30k", "visual_genome", "features", "images", "senteval")
WRITER = "vlprobe demo builder"
#: what file browsers leave in any folder they show: no user data, never a reason to refuse
BROWSER_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
#: the OWNER text of vlprobe releases before the manifest: a build of unknown files
LEGACY_OWNER = "written by vlprobe's demo builder: it may overwrite this folder\n"


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


def read_manifest(root: Path) -> list[str] | None | bool:
    """The files the last build wrote (relative paths); ``None`` for a build that did not
    finish (its files are unknown but under ``ENTRIES``); ``False``: no manifest of ours."""
    path = Path(root) / OWNER
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if text == LEGACY_OWNER:
        return None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError:
        return False
    if not isinstance(manifest, dict) or manifest.get("writer") != WRITER:
        return False
    files = manifest.get("files")
    return [str(f) for f in files] if isinstance(files, list) else None


def write_manifest(root: Path, files: list[str] | None) -> None:
    """Atomically: a torn manifest would disown the folder (or worse, own too much)."""
    tmp = Path(root) / f"{OWNER}.tmp"
    tmp.write_text(json.dumps({"writer": WRITER, "entries": ENTRIES, "files": files}) + "\n")
    os.replace(tmp, Path(root) / OWNER)


def written_files(root: Path) -> list[str]:
    """Every file under the build's entries, relative to ``root``."""
    return sorted(
        str(p.relative_to(root))
        for entry in ENTRIES
        for p in (Path(root) / entry).rglob("*")
        if p.is_file() or p.is_symlink()
    )


def foreign_entry(root: Path) -> Path | None:
    """The first thing in ``root`` the demo builder did not write (None: it owns it all)."""
    root = Path(root)
    if not root.exists() or all(p.name in BROWSER_FILES for p in root.iterdir()):
        return None  # new or empty
    manifest = read_manifest(root)
    if manifest is False:  # name a data file rather than a stray stamp
        children = sorted(root.iterdir(), key=lambda p: (p.name in (STAMP, OWNER), p.name))
        return children[0]
    own = {OWNER, f"{OWNER}.tmp", lock_path_for(root / OWNER).name, STAMP, *ENTRIES, *BROWSER_FILES}
    for child in sorted(root.iterdir()):
        if child.name not in own or (child.name in ENTRIES and not child.is_dir()):
            return child
    if manifest is not None:
        known = set(manifest)
        for name in written_files(root):
            if name not in known and Path(name).name not in BROWSER_FILES:
                return root / name
    return None


def claim(root: Path, key: str = "data.root") -> None:
    """Make ``root`` the demo builder's own; refuse a folder that holds anything else.
    ``key``: where the user gave the folder (``data.root``, ``--out``)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{key}={root} is a file: give a folder for the demo data")
    foreign = foreign_entry(root)
    if foreign is not None:
        raise ValueError(
            f"{key}={root} holds files the demo builder did not write ({foreign}), and it "
            "would overwrite them: this is not vlprobe demo data; for your own data add "
            f"data=real (python train_probe.py data=real data.root={root}); for the demo give "
            "an empty or new folder"
        )
    root.mkdir(parents=True, exist_ok=True)
    if read_manifest(root) is False:  # a new or empty folder: ours from now on
        write_manifest(root, None)


def clear_old_build(root: Path) -> None:
    """Remove a previous build (only what it wrote, checked by :func:`claim`): one with more
    scenes left its extra images' files behind, which readers and hashes would take for data
    of this build."""
    (root / STAMP).unlink(missing_ok=True)
    write_manifest(root, None)  # from here on a build that may not finish
    for entry in ENTRIES:
        if (root / entry).is_dir():
            shutil.rmtree(root / entry)


def build_demo(
    root: Path,
    scenes: int,
    seed: int,
    feature_dim: int,
    force: bool = False,
    key: str = "data.root",
    **kwargs: object,
) -> bool:
    """Write the demo set at ``root`` unless it is current (or ``force``); returns whether it
    wrote. One builder at a time: a second one waits, then finds the folder current. ``key``
    names the folder's setting in errors."""
    from vlprobe.synthetic.demo import make_demo_data

    root = Path(root)
    settings = demo_settings(scenes, seed, feature_dim)
    if not force and is_current(root, settings) and foreign_entry(root) is None:
        return False
    claim(root, key)
    with exclusive_lock(root / OWNER, what=f"the demo data at {root}"):
        claim(root, key)  # again under the lock: what another builder left must be its own
        if not force and is_current(root, settings):
            return False
        clear_old_build(root)
        log.info("building the demo data set (%d scenes) at %s", scenes, root)
        make_demo_data(root, scenes=scenes, seed=seed, feature_dim=feature_dim, **kwargs)
        write_manifest(root, written_files(root))
        write_stamp(root, settings)
    return True
