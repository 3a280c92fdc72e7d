"""A stamp file saying which settings wrote a demo data folder, so stale demos are rebuilt.

Without it, changing ``data.scenes`` or upgrading vlprobe would silently reuse old files.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlprobe import __version__

STAMP = "DONE"


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
