"""The intervention as an extraction setting: fitted before extraction, carried by the cache.

``fitted(cfg)`` builds (or reuses) the plain cache of the concept's data set, fits the eraser
on its train split, saves it under ``<cache_dir>/erasers/<sha256>.npz`` and returns the config
with ``intervention.eraser`` (the parameters' hash) and ``intervention.fit_on`` (the plain
cache's name) set. Those, with the settings, enter the intervened cache's name and input
fingerprint (``cache_key``), so another eraser or another plain cache never reuses it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf, open_dict

from vlprobe.cache.reader import CacheReader
from vlprobe.data.examples import VLExample
from vlprobe.intervention.concepts import Concept, concept
from vlprobe.intervention.erasers import KINDS, Eraser
from vlprobe.intervention.fit import fit_eraser
from vlprobe.intervention.hooks import erasing, selecting_words
from vlprobe.models.base import ModelInput

log = logging.getLogger(__name__)

#: the model classes ``hooks.SITES`` can intervene on, as the plain cache records them
SUPPORTED_CLASSES = ("VisualBertModel", "UniterModel", "LxmertModel")
#: why the others cannot be, by model class
REFUSALS = {"ViltModel": "its image tokens are image patches, not regions"}
#: multi-stream model classes: the stream a concept's tokens are erased in (concepts.TOKENS),
#: the only one whose layers take a hook for them (``hooks.lxmert_site``)
STREAM_OF_TOKENS = {"LxmertModel": {"regions": "vision", "words": "language"}}


def active(cfg: DictConfig) -> DictConfig | None:
    """``cfg.intervention`` unless absent or ``kind: none``."""
    node = cfg.get("intervention")
    if node is None or node.get("kind", "none") == "none":
        return None
    if node.kind not in KINDS:
        raise ValueError(f"intervention.kind={node.kind!r}; valid: none, {', '.join(KINDS)}")
    return node


def cache_key(cfg: DictConfig) -> dict[str, Any]:
    """``{"intervention": settings}`` for the cache name and fingerprint; ``{}`` without one
    (plain caches keep the names they had)."""
    node = active(cfg)
    if node is None:
        return {}
    if not node.get("eraser"):
        raise RuntimeError("intervention: the eraser is fitted before the cache is named")
    settings = OmegaConf.to_container(node, resolve=True)
    assert isinstance(settings, dict)
    settings.pop("file", None)  # where it lies is not what it is
    if settings.get("stream") is None:  # one-sequence models: the names they had
        settings.pop("stream", None)
    return {"intervention": settings}


def name_tag(cfg: DictConfig) -> str:
    """``__leace-region_class-L3`` (random: ``-d<draw>``) in the cache file name; ``""``."""
    node = active(cfg)
    if node is None:
        return ""
    draw = f"-d{node.draw}" if node.kind == "random" else ""
    return f"__{node.kind}-{node.concept}-L{node.layer}{draw}"


def plain_config(cfg: DictConfig) -> DictConfig:
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.intervention = {"kind": "none"}
    return out


def with_intervention(cfg: DictConfig, settings: dict[str, Any]) -> DictConfig:
    """``cfg`` with ``intervention`` = ``configs/intervention/<kind>.yaml`` updated by
    ``settings`` (a task's interventions, e.g. ``{"kind": "random", "draw": 2}``)."""
    from vlprobe.config import config_dir

    node = OmegaConf.merge(
        OmegaConf.load(config_dir() / "intervention" / f"{settings['kind']}.yaml"), settings
    )
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.intervention = node
    return out


def _model_class(reader: CacheReader) -> str:
    return str(reader.attr("model_class")) if "model_class" in reader.file.attrs else "?"


def declared_model_class(cfg: DictConfig) -> str | None:
    """The model class an adapter's ``build`` makes (``_target_: <Adapter>.build``), known
    before anything is built; None for a builder function (uniter-mini)."""
    owner = getattr(get_method(str(cfg.model._target_)), "__self__", None)
    model_class = getattr(owner, "model_class", None)
    return model_class.__name__ if model_class is not None else None


def check_model(cfg: DictConfig, model_class: str | None) -> None:
    """One line refusing a model the hooks cannot intervene on (None: not known yet)."""
    if model_class is None or model_class in SUPPORTED_CLASSES:
        return
    why = REFUSALS.get(model_class, "the hooks know no layer of it")
    raise ValueError(
        f"intervention: model {cfg.model.name} ({model_class}) cannot be intervened on: {why}; "
        "use visualbert-minilm, visualbert, uniter or uniter-mini (every hidden layer), or "
        "lxmert/lxmert_small (its vision and language encoders' layers)"
    )


def _lxmert_layers(cfg: DictConfig) -> dict[str, int]:
    """``l_layers``, ``r_layers``, ``x_layers`` of the configured LXMERT (its overrides of
    the defaults, which the pretrained checkpoint has)."""
    from transformers import LxmertConfig

    given = cfg.model.get("config") or {}
    default = LxmertConfig()
    return {k: int(given.get(k, getattr(default, k))) for k in ("l_layers", "r_layers", "x_layers")}


def erased_stream(cfg: DictConfig, model_class: str | None) -> str | None:
    """The stream of a multi-stream model the eraser is fitted on and hooked in: the one of
    the concept's tokens (None: a one-sequence model); one line refusing any other stream (LXMERT's
    cross-modality layers), a layer outside it, or a ``model.stream`` without it."""
    node = active(cfg)
    if node is None:
        return None
    asked = node.get("stream")
    if model_class not in STREAM_OF_TOKENS:
        if asked is not None and model_class is not None:
            raise ValueError(
                f"intervention.stream={asked}: {cfg.model.name} has one sequence; leave it null"
            )
        return None
    from vlprobe.models.lxmert import STREAMS, parse_streams

    what = concept_of(node)
    own = STREAM_OF_TOKENS[model_class][what.tokens]
    n = _lxmert_layers(cfg)
    usable = (
        f"region_class can be erased at the vision encoder's layers vis00..vis{n['r_layers']:02d}"
        f", phrase_type and senteval_label at the language encoder's lang00..lang"
        f"{n['l_layers']:02d} (intervention.layer=0..{n['r_layers']} or 0..{n['l_layers']}; "
        "the cross-modality layers above compute on the erased states)"
    )
    if asked is not None and asked != own:
        why = (
            f"LXMERT's cross-modality layers X00..X{n['x_layers']:02d} take two streams "
            "(language and vision), so one stream's states cannot be erased in them"
            if asked == "cross"
            else f"{what.name} is erased in LXMERT's {own} stream"
        )
        raise ValueError(f"intervention.stream={asked}: {why}; {usable}")
    top = n[STREAMS[own][0]]
    if not 0 <= int(node.layer) <= top:
        raise ValueError(
            f"intervention.layer={node.layer} is outside LXMERT's {own} encoder: {usable}"
        )
    cached = parse_streams(cfg.model.get("stream", "all"))
    if own not in cached:
        raise ValueError(
            f"model.stream={cfg.model.get('stream')}: erasing {what.name} in LXMERT fits on and "
            f"hooks its {own} stream; use model.stream=all or a list holding {own}"
        )
    return own


def fitted(cfg: DictConfig) -> DictConfig:
    """``cfg`` with its eraser fitted and saved (unchanged without an intervention, or when
    ``intervention.eraser`` is already set)."""
    node = active(cfg)
    if node is None or node.get("eraser"):
        return cfg
    from vlprobe.extraction.pipeline import ensure_cache  # it calls this module

    what = concept_of(node)
    declared = declared_model_class(cfg)
    check_model(cfg, declared)  # before the plain cache is built
    stream = erased_stream(cfg, declared)
    plain = ensure_cache(plain_config(cfg), what.dataset, parts=what.reads)
    reader = CacheReader(plain)
    try:
        check_model(cfg, _model_class(reader))
        stream = erased_stream(cfg, _model_class(reader))
        eraser = fit_eraser(
            reader.stream_reader(stream) if stream else reader,
            what,
            str(node.kind),
            int(node.layer),
            int(node.top_k),
            draw=int(node.get("draw", 0)),
            iterations=int(node.get("iterations", 10)),
            rank=node.get("rank"),
        )
    finally:
        reader.close()
    digest = eraser.digest()
    file = eraser.save(eraser_file(Path(cfg.paths.cache_dir), digest))
    log.info(
        "intervention %s of %s at layer %s: rank %d, fitted on %s",
        node.kind,
        node.concept,
        node.layer,
        eraser.rank,
        plain.name,
    )
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.intervention.eraser = digest
        out.intervention.fit_on = plain.name
        out.intervention.erased_rank = eraser.rank
        out.intervention.file = str(file)
        out.intervention.stream = stream
    return out


def eraser_file(cache_dir: Path, digest: str) -> Path:
    """Where the eraser of sha256 ``digest`` is saved: beside the caches it makes."""
    return cache_dir / "erasers" / f"{digest[:16]}.npz"


def cache_eraser(reader: CacheReader) -> Eraser | None:
    """The eraser an intervened cache was extracted with (its fingerprint names it; it lies in
    ``erasers/`` beside the cache); None for a plain cache."""
    settings = reader.attr("input_fingerprint")["settings"].get("intervention")  # type: ignore[index]
    if settings is None:
        return None
    file = eraser_file(reader.path.parent, settings["eraser"])
    if not file.is_file():
        raise FileNotFoundError(
            f"{reader.path} was extracted with the eraser {settings['eraser'][:16]}, but {file} "
            "is missing: rebuild the cache (delete it) so that its eraser is fitted again"
        )
    return load_eraser(file, settings["eraser"])


def load_eraser(file: Path, digest: str) -> Eraser:
    """The eraser saved at ``file``, refused unless its parameters hash to ``digest``."""
    eraser = Eraser.load(file)
    if eraser.digest() != digest:
        raise ValueError(f"intervention: {file} is not the eraser {digest[:16]}")
    return eraser


def concept_of(node: DictConfig) -> Concept:
    """The concept an intervention's settings name (``senteval_task``: senteval_label's data)."""
    return concept(str(node.concept), node.get("senteval_task"))


@contextmanager
def hook(cfg: DictConfig, adapter: Any, examples: Sequence[VLExample]) -> Iterator[None]:
    """The erasing hooks on ``adapter``'s model for the fitted intervention of ``cfg`` (none:
    nothing) while it encodes ``examples`` (a word concept's words are looked up per input)."""
    node = active(cfg)
    if node is None:
        yield
        return
    what = concept_of(node)
    eraser = load_eraser(Path(node.file), str(node.eraser))
    with ExitStack() as stack:
        if what.tokens == "words":
            table = {id(ex.inputs): what.words(ex) for ex in examples}

            def words(inp: ModelInput) -> list[int]:
                if id(inp) not in table:
                    raise RuntimeError("intervention: an input outside the examples was encoded")
                return table[id(inp)]

            stack.enter_context(selecting_words(adapter, words))
        stack.enter_context(erasing(adapter.model, eraser, int(node.layer), what.tokens))
        yield
