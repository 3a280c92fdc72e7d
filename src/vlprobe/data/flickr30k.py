"""Flickr30k Entities readers: captions with coreference chains, boxes per chain, split lists.

Root layout: ``root/Sentences/<id>.txt``, ``root/Annotations/<id>.xml`` and
``root/{train,val,test}.txt`` (see ``VALUE.md``, "Data formats").
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from vlprobe.data.errors import DataFormatError, ProblemLog, skip_or_raise
from vlprobe.data.text import check_utf8, open_text
from vlprobe.data.types import SPLITS, Box, Caption, EntityAnnotation, Phrase

PathLike = str | os.PathLike[str]

_PHRASE_HINT = "Phrases are written '[/EN#<chain id>/<type>[/<type>...] word word ...]'"


def parse_caption(line: str, image_id: str, index: int, path: PathLike | None = None) -> Caption:
    """Parse one caption line: bracket markup removed, phrases indexing the remaining words.

    Text outside phrases is split on whitespace, so ``"[/EN#1/people a man]."`` gives the words
    ``a man .``. Chain ``"0"`` (notvisual) is kept: builders decide what to drop.
    Raises :class:`DataFormatError` citing ``path`` (default ``Sentences/<image_id>.txt``),
    line ``index + 1`` and the column.
    """
    src = path if path is not None else f"Sentences/{image_id}.txt"

    def fail(col: int, message: str) -> DataFormatError:
        return DataFormatError(src, f"line {index + 1}, column {col + 1}", message, _PHRASE_HINT)

    words: list[str] = []
    phrases: list[Phrase] = []
    pos = 0
    while True:
        open_at = line.find("[", pos)
        close_at = line.find("]", pos)
        if close_at != -1 and (open_at == -1 or close_at < open_at):
            raise fail(close_at, "']' without an opening '['")
        if open_at == -1:
            words.extend(line[pos:].split())
            break
        words.extend(line[pos:open_at].split())
        if close_at == -1:
            raise fail(open_at, "'[' is never closed")
        nested = line.find("[", open_at + 1)
        if nested != -1 and nested < close_at:
            raise fail(nested, "nested '[' inside a phrase")
        inner = line[open_at + 1 : close_at].split(None, 1)
        if not inner or not inner[0].startswith("/EN#"):
            raise fail(open_at, "phrase does not start with '/EN#'")
        if len(inner) < 2 or not inner[1].strip():
            raise fail(open_at, f"phrase '{inner[0]}' has no words")
        chain, *types = inner[0][len("/EN#") :].split("/")
        if not chain.isdigit():
            raise fail(open_at, f"chain id '{chain}' is not a number")
        if not types or any(not t for t in types):
            raise fail(open_at, f"phrase '{inner[0]}' has an empty or missing type")
        phrase_words = tuple(inner[1].split())
        phrases.append(Phrase(chain, tuple(types), phrase_words, len(words)))
        words.extend(phrase_words)
        pos = close_at + 1
    return Caption(image_id, index, tuple(words), tuple(phrases))


def read_sentences(
    path: PathLike, strict: bool = True, problems: ProblemLog | None = None
) -> list[Caption]:
    """All captions of ``Sentences/<id>.txt``; ``Caption.index`` is the 0-based line number.

    Blank lines are not captions and are passed over (indexes keep counting lines).
    """
    path = Path(path)
    captions: list[Caption] = []
    with open_text(path) as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                check_utf8(line, path, f"line {i + 1}")
                captions.append(parse_caption(line, path.stem, i, path))
            except DataFormatError as e:
                skip_or_raise(e, strict, problems)
    return captions


def _int_text(node: ET.Element, tag: str, path: Path, where: str) -> int:
    child = node.find(tag)
    text = child.text.strip() if child is not None and child.text else ""
    try:
        return int(float(text))
    except ValueError:
        raise DataFormatError(
            path,
            f"{where}/{tag}",
            f"expected a number, got '{text}'" if text else "missing",
            "Each value must be a whole number of pixels",
        ) from None


def _flag(node: ET.Element, tag: str) -> bool:
    child = node.find(tag)
    return child is not None and (child.text or "").strip() == "1"


def read_annotation(
    path: PathLike, strict: bool = True, problems: ProblemLog | None = None
) -> EntityAnnotation:
    """Read ``Annotations/<id>.xml`` (PASCAL-VOC style) into boxes per chain.

    ``<bndbox>`` holds 1-based inclusive pixel coordinates; they become the 0-based half-open
    box ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` so a one-pixel box has area 1 and
    IoU against detector boxes (0-based pixel corners) is comparable. An object with several
    ``<name>`` chain ids adds its box to each chain. A malformed file or ``<size>`` always
    raises; a malformed ``<object>`` is skipped when ``strict=False``.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        line, col = e.position
        raise DataFormatError(
            path,
            f"line {line}, column {col + 1}",
            f"not well-formed XML ({str(e).split(':')[0]})",
            "Check that the file is a complete Flickr30k Entities annotation",
        ) from None
    size = root.find("size")
    if size is None:
        raise DataFormatError(path, f"{root.tag}/size", "missing <size>", "Add width and height")
    width = _int_text(size, "width", path, f"{root.tag}/size")
    height = _int_text(size, "height", path, f"{root.tag}/size")
    ann = EntityAnnotation(path.stem, width, height)
    for k, obj in enumerate(root.findall("object"), start=1):
        where = f"{root.tag}/object[{k}]"
        try:
            names = [n.text.strip() for n in obj.findall("name") if n.text and n.text.strip()]
            if not names:
                raise DataFormatError(path, where, "object has no <name> chain id", "Add one")
            bnd = obj.find("bndbox")
            if bnd is not None:
                xmin, ymin, xmax, ymax = (
                    _int_text(bnd, t, path, f"{where}/bndbox")
                    for t in ("xmin", "ymin", "xmax", "ymax")
                )
                if xmax < xmin or ymax < ymin:
                    raise DataFormatError(
                        path,
                        f"{where}/bndbox",
                        f"empty box (xmin={xmin}, ymin={ymin}, xmax={xmax}, ymax={ymax})",
                        "xmax must be >= xmin and ymax >= ymin",
                    )
                box = Box(float(xmin - 1), float(ymin - 1), float(xmax), float(ymax))
                for name in names:
                    ann.boxes.setdefault(name, []).append(box)
            nobox, scene = _flag(obj, "nobndbox"), _flag(obj, "scene")
            if bnd is None and not (nobox or scene):
                raise DataFormatError(
                    path,
                    where,
                    "object has neither <bndbox> nor <nobndbox>1 / <scene>1",
                    "Give it a box or flag it",
                )
            for name in names:
                if nobox:
                    ann.nobox.add(name)
                if scene:
                    ann.scene.add(name)
        except DataFormatError as e:
            skip_or_raise(e, strict, problems)
    return ann


def read_split(
    path: PathLike, strict: bool = True, problems: ProblemLog | None = None
) -> list[str]:
    """Image ids, one per line, in file order; blank lines are ignored, duplicates are errors."""
    path = Path(path)
    ids: list[str] = []
    seen: dict[str, int] = {}
    with open_text(path) as f:
        for n, line in enumerate(f, start=1):
            image_id = line.strip()
            if not image_id:
                continue
            try:
                check_utf8(image_id, path, f"line {n}")
                if len(image_id.split()) != 1:
                    raise DataFormatError(
                        path,
                        f"line {n}",
                        f"expected one image id, got '{image_id}'",
                        "Write one id per line",
                    )
                if image_id in seen:
                    raise DataFormatError(
                        path,
                        f"line {n}",
                        f"image id {image_id} repeats line {seen[image_id]}",
                        "List each image once",
                    )
            except DataFormatError as e:
                skip_or_raise(e, strict, problems)
                continue
            seen[image_id] = n
            ids.append(image_id)
    return ids


class Flickr30kEntities:
    """Lazy access to a Flickr30k Entities root; each file is read once, on first use."""

    def __init__(
        self, root: PathLike, strict: bool = True, problems: ProblemLog | None = None
    ) -> None:
        self.root = Path(root)
        self.strict = strict
        self.problems = problems
        self._splits: dict[str, list[str]] | None = None
        self._owner: dict[str, str] = {}
        self._captions: dict[str, list[Caption]] = {}
        self._annotations: dict[str, EntityAnnotation] = {}

    def _load_splits(self) -> dict[str, list[str]]:
        if self._splits is None:
            splits: dict[str, list[str]] = {}
            for split in SPLITS:
                file = self.root / f"{split}.txt"
                splits[split] = []
                for image_id in (
                    read_split(file, self.strict, self.problems) if file.exists() else []
                ):
                    if image_id in self._owner:
                        error = DataFormatError(
                            file,
                            f"image {image_id}",
                            f"also listed in {self._owner[image_id]}.txt",
                            "An image must be in one split only, or it leaks between splits",
                        )
                        skip_or_raise(error, self.strict, self.problems)
                        continue
                    self._owner[image_id] = split
                    splits[split].append(image_id)
            self._splits = splits
        return self._splits

    def split_ids(self, split: str) -> list[str]:
        """Ids of ``root/<split>.txt`` (empty if absent); an image in two splits is an error."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self._load_splits()[split]

    def split_of(self, image_id: str) -> str | None:
        """The split an image is listed in, or ``None``."""
        self._load_splits()
        return self._owner.get(image_id)

    def image_ids(self) -> list[str]:
        """Ids with a ``Sentences/<id>.txt`` file, sorted."""
        return sorted(p.stem for p in (self.root / "Sentences").glob("*.txt"))

    def captions(self, image_id: str) -> list[Caption]:
        """Captions of one image (``Sentences/<id>.txt``)."""
        if image_id not in self._captions:
            path = self.root / "Sentences" / f"{image_id}.txt"
            self._captions[image_id] = read_sentences(path, self.strict, self.problems)
        return self._captions[image_id]

    def annotation(self, image_id: str) -> EntityAnnotation:
        """Boxes per chain of one image (``Annotations/<id>.xml``)."""
        if image_id not in self._annotations:
            path = self.root / "Annotations" / f"{image_id}.xml"
            self._annotations[image_id] = read_annotation(path, self.strict, self.problems)
        return self._annotations[image_id]
