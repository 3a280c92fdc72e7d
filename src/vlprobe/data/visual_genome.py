"""Visual Genome reader: ``objects.json``, ``relationships.json`` and ``image_data.json``.

Every error cites the file and the JSON path of the bad record, e.g.
``relationships.json, [3].relationships[0].subject: ...``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from vlprobe.data.errors import DataFormatError, ProblemLog, skip_or_raise
from vlprobe.data.types import Box, VGImage, VGObject, VGRelation

PathLike = str | os.PathLike[str]
logger = logging.getLogger(__name__)


def normalize_predicate(s: str) -> str:
    """``"  Sitting   ON "`` -> ``"sitting on"``: predicates are free text in mixed case."""
    return " ".join(s.lower().split())


def _load_json_list(path: Path) -> list[Any]:
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is not an error
            data = json.load(f)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except json.JSONDecodeError as e:
        raise DataFormatError(
            path,
            f"line {e.lineno}, column {e.colno}",
            f"invalid JSON ({e.msg})",
            "Check that the file is complete (not truncated)",
        ) from None
    if not isinstance(data, list):
        raise DataFormatError(
            path, "$", "expected a JSON list, one entry per image", "Use the official file layout"
        )
    return data


def _not_utf8(path: Path) -> DataFormatError:
    """Where the first undecodable byte is (the codec's offset is into a chunk, not the file)."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
        pos = 0
    except UnicodeDecodeError as e:
        pos = e.start
    line, column = raw.count(b"\n", 0, pos) + 1, pos - (raw.rfind(b"\n", 0, pos) + 1) + 1
    return DataFormatError(
        path,
        f"line {line}, column {column}",
        f"not UTF-8 text (byte 0x{raw[pos]:02x})",
        "Save the file as UTF-8 (JSON is UTF-8)",
    )


def _image_id(entry: Any, path: Path, where: str) -> str:
    if not isinstance(entry, dict):
        raise DataFormatError(
            path,
            where,
            f"expected an object, got {type(entry).__name__}",
            "Give one object per image",
        )
    for key in ("image_id", "id"):
        if key in entry:
            return str(entry[key])
    raise DataFormatError(path, where, "no 'image_id' (or 'id')", "Every entry needs its image id")


def _number(obj: dict[str, Any], key: str, path: Path, where: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataFormatError(
            path,
            f"{where}.{key}",
            f"expected a number, got {value!r}",
            "Objects need x, y (top-left), w and h in pixels",
        )
    return float(value)


def _parse_object(obj: Any, path: Path, where: str) -> VGObject:
    """An object dict (``names`` list or ``name`` string) -> :class:`VGObject`."""
    if not isinstance(obj, dict):
        raise DataFormatError(
            path, where, f"expected an object, got {type(obj).__name__}", "Give a JSON object"
        )
    oid = obj.get("object_id", obj.get("id"))
    if isinstance(oid, bool) or not isinstance(oid, int):
        raise DataFormatError(
            path, f"{where}.object_id", f"expected an integer, got {oid!r}", "Give 'object_id'"
        )
    x, y, w, h = (_number(obj, k, path, where) for k in ("x", "y", "w", "h"))
    if w <= 0 or h <= 0:
        raise DataFormatError(
            path, where, f"object {oid} has an empty box (w={w:g}, h={h:g})", "w and h must be > 0"
        )
    raw = obj.get("names", obj.get("name"))
    raw_names = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw_names, list) or not all(isinstance(n, str) for n in raw_names):
        raise DataFormatError(
            path,
            f"{where}.names",
            f"expected a list of strings, got {raw!r}",
            "Give 'names': [...] or 'name': '...'",
        )
    names = tuple(n for n in (normalize_predicate(n) for n in raw_names) if n)
    if not names:
        raise DataFormatError(path, where, f"object {oid} has no name", "Give it at least one")
    return VGObject(oid, Box(x, y, x + w, y + h), names)


def load_visual_genome(
    root: PathLike, strict: bool = True, problems: ProblemLog | None = None
) -> dict[str, VGImage]:
    """Images by id (string) with their objects and relations.

    Boxes are ``x, y`` (top-left) plus ``w, h`` -> ``Box(x, y, x + w, y + h)``. Object names and
    predicates are normalised (lower case, single spaces). Objects that appear only inside
    ``relationships.json`` are added to their image; an id already in ``objects.json`` keeps that
    version. ``objects.json`` is optional: without it the objects are those of the relations
    (Visual Genome's ``relationships.json`` carries them whole). Images missing from
    ``image_data.json`` have no size, so their records are errors.
    """
    root = Path(root)
    for name in ("image_data.json", "relationships.json"):
        if not (root / name).is_file():
            raise FileNotFoundError(
                f"{root / name} not found: Visual Genome needs image_data.json and "
                "relationships.json (objects.json is optional); check data.visual_genome"
            )
    images: dict[str, VGImage] = {}

    path = root / "image_data.json"
    for i, entry in enumerate(_load_json_list(path)):
        try:
            image_id = _image_id(entry, path, f"[{i}]")
            width = _number(entry, "width", path, f"[{i}]")
            height = _number(entry, "height", path, f"[{i}]")
            if image_id in images:
                raise DataFormatError(
                    path, f"[{i}]", f"image {image_id} is listed twice", "Keep one entry"
                )
            images[image_id] = VGImage(image_id, int(width), int(height))
        except DataFormatError as e:
            skip_or_raise(e, strict, problems)

    def image_of(entry: Any, path: Path, where: str) -> VGImage:
        image_id = _image_id(entry, path, where)
        if image_id not in images:
            raise DataFormatError(
                path,
                where,
                f"image {image_id} is not in image_data.json",
                "Use matching versions of the Visual Genome files",
            )
        return images[image_id]

    path = root / "objects.json"
    if not path.exists():
        logger.info("%s not found: objects are taken from relationships.json", path)
    for i, entry in enumerate(_load_json_list(path) if path.exists() else []):
        try:
            image = image_of(entry, path, f"[{i}]")
        except DataFormatError as e:
            skip_or_raise(e, strict, problems)
            continue
        for j, obj in enumerate(entry.get("objects", [])):
            try:
                parsed = _parse_object(obj, path, f"[{i}].objects[{j}]")
                image.objects.setdefault(parsed.object_id, parsed)
            except DataFormatError as e:
                skip_or_raise(e, strict, problems)

    path = root / "relationships.json"
    for i, entry in enumerate(_load_json_list(path)):
        try:
            image = image_of(entry, path, f"[{i}]")
        except DataFormatError as e:
            skip_or_raise(e, strict, problems)
            continue
        for j, rel in enumerate(entry.get("relationships", [])):
            where = f"[{i}].relationships[{j}]"
            try:
                if not isinstance(rel, dict):
                    raise DataFormatError(path, where, "expected an object", "Give a JSON object")
                subject = _parse_object(rel.get("subject"), path, f"{where}.subject")
                obj = _parse_object(rel.get("object"), path, f"{where}.object")
                predicate = rel.get("predicate")
                if not isinstance(predicate, str) or not normalize_predicate(predicate):
                    raise DataFormatError(
                        path,
                        f"{where}.predicate",
                        f"expected a non-empty string, got {predicate!r}",
                        "Give the predicate text",
                    )
                rid = rel.get("relationship_id", rel.get("id", j))
                image.objects.setdefault(subject.object_id, subject)
                image.objects.setdefault(obj.object_id, obj)
                image.relations.append(
                    VGRelation(
                        int(rid), normalize_predicate(predicate), subject.object_id, obj.object_id
                    )
                )
            except DataFormatError as e:
                skip_or_raise(e, strict, problems)
    return images
