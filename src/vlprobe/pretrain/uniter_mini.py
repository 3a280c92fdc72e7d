"""``model=uniter_mini``: a small UNITER pre-trained on the demo's images and captions.

The demo's positive control: its text side starts from the real MiniLM (as UNITER starts from
BERT); word-region contrastive learning on the training images' captions puts its region
embeddings where the words can find them, then MLM + ITM (+ MRFR, WRA) teach it to relate
words and regions, which a random-init copy (``model.random_init=true``) has not learned.
Built on first use (minutes on a CPU, with a progress bar), saved under ``out_dir`` in the
released UNITER layout (``uniter-mini.pt``, ``config.json``, ``tokenizer/``) and reused by
every later run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.loggers import Logger
from torch.utils.data import DataLoader
from transformers import AutoModel

from vlprobe import __version__
from vlprobe.cache.lock import exclusive_lock
from vlprobe.hashing import content_hash, text_sha256
from vlprobe.models.tokenization import (
    default_text_model_path,
    load_tokenizer,
    text_model_version,
)
from vlprobe.models.uniter import (
    PREFIX,
    UniterAdapter,
    UniterConfig,
    UniterModel,
    build_random,
)

log = logging.getLogger(__name__)
CHECKPOINT, CONFIG, TOKENIZER, RECORD, STEP_LOG = (
    "uniter-mini.pt",
    "config.json",
    "tokenizer",
    "pretrain.json",
    "pretrain_log.csv",
)
TRAINING_INPUTS = ("flickr30k", "visual_genome", "features")  # settings naming data paths


@dataclass
class PretrainSettings:
    """Everything that changes the pre-trained weights (its hash names the saved folder)."""

    flickr30k: str
    visual_genome: str
    features: str
    feature_dim: int = 2048
    vg_split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    layers: int = 4  # MiniLM's first ``layers`` layers
    steps: int = 150  # 0: MiniLM's text side and an untrained region side (the text-init control)
    batch_size: int = 32
    lr: float = 2e-4
    region_lr_scale: float = 1.0  # the region embeddings start random: a larger step for them
    encoder_lr_scale: float = 1.0  # the text-initialised encoder's step (0: frozen)
    mask_prob: float = 0.15
    phrase_mask_prob: float = 0.15  # words of phrases that name a region
    hard_negative_prob: float = 0.0  # share of ITM negatives made by swapping one phrase
    relation_negative_prob: float = 0.0  # share made by swapping the words linking two phrases
    link_mask_prob: float = 0.0  # words linking two grounded phrases (0: as mask_prob)
    mrfr: bool = True
    wra: float = 0.0  # weight of word-region alignment by optimal transport (UNITER: 0.1)
    region_recon: float = 0.0  # weight of regressing visible regions' own features
    # steps of word-region contrastive learning of the region embeddings alone, before the
    # joint objectives (0: none; vlprobe.pretrain.contrastive)
    contrastive_steps: int = 0
    contrastive_lr: float = 1e-3
    contrastive: float = 0.0  # its weight during the joint objectives (0: off)
    itm_pooling: str = "cls"  # what ITM reads: UNITER's pooled [CLS], or "mean" (the mean state)
    # share of pairs matched and unmasked for ITM alone; negatives then take the same share and
    # ITM reads only unmasked pairs (0: half the pairs negative, ITM reads masked pairs too)
    itm_clean_prob: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        # `model.pretrain.wra=1` and `=1.0` are one model: floats before the digest
        floats = ("lr", "region_lr_scale", "encoder_lr_scale", "mask_prob", "phrase_mask_prob")
        floats += ("hard_negative_prob", "relation_negative_prob", "link_mask_prob", "wra")
        floats += ("region_recon", "contrastive_lr", "contrastive", "itm_clean_prob")
        for name in floats:
            setattr(self, name, _number(name, getattr(self, name)))
        checks = {  # key: (valid?, the range to give)
            "layers": (1 <= self.layers <= 6, "1 to 6 (MiniLM has 6)"),
            "steps": (self.steps >= 0, ">= 0"),
            "batch_size": (self.batch_size >= 2, ">= 2"),
            "lr": (self.lr > 0, "> 0"),
            "region_lr_scale": (self.region_lr_scale > 0, "> 0"),
            "encoder_lr_scale": (self.encoder_lr_scale >= 0, ">= 0 (0 freezes the encoder)"),
            "mask_prob": (0 < self.mask_prob < 1, "in (0, 1)"),
            "phrase_mask_prob": (0 < self.phrase_mask_prob < 1, "in (0, 1)"),
            "hard_negative_prob": (0 <= self.hard_negative_prob <= 1, "in [0, 1]"),
            "relation_negative_prob": (
                0 <= self.relation_negative_prob <= 1 - self.hard_negative_prob,
                "in [0, 1 - hard_negative_prob]",
            ),
            "link_mask_prob": (0 <= self.link_mask_prob < 1, "in [0, 1)"),
            "wra": (self.wra >= 0, ">= 0 (0: off)"),
            "region_recon": (self.region_recon >= 0, ">= 0 (0: off)"),
            "contrastive_steps": (self.contrastive_steps >= 0, ">= 0 (0: no stage)"),
            "contrastive_lr": (self.contrastive_lr > 0, "> 0"),
            "contrastive": (self.contrastive >= 0, ">= 0 (0: off)"),
            "itm_pooling": (self.itm_pooling in ("mean", "cls"), "mean or cls"),
            "itm_clean_prob": (0 <= self.itm_clean_prob < 0.5, "in [0, 0.5)"),
        }
        for key, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(
                    f"model.pretrain.{key}={getattr(self, key)} is out of range: give {allowed}"
                )

    def digest(self) -> str:
        return text_sha256(json.dumps(asdict(self), sort_keys=True), 10)


def _number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"model.pretrain.{key}={value!r} is not a number") from None


def mini_config(layers: int, feature_dim: int) -> UniterConfig:
    """MiniLM's architecture (hidden 384, 12 heads, uncased vocabulary), ``layers`` deep."""
    text = json.loads((default_text_model_path() / "config.json").read_text())
    keys = ("vocab_size", "hidden_size", "num_attention_heads", "intermediate_size", "hidden_act")
    keys += ("max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id")
    return UniterConfig(img_dim=feature_dim, num_hidden_layers=layers, **{k: text[k] for k in keys})


def init_from_minilm(model: UniterModel) -> None:
    """Text embeddings, the first layers and the pooler from MiniLM; region side stays random."""
    bert = AutoModel.from_pretrained(
        str(default_text_model_path()), local_files_only=True, dtype=torch.float32
    )
    keep = model.config.num_hidden_layers
    state = {
        k: v
        for k, v in bert.state_dict().items()
        if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < keep
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    stray = [k for k in missing if not k.startswith("img_embeddings.")]
    if stray or unexpected:
        raise ValueError(f"MiniLM -> UNITER mismatch: missing {stray}, unexpected {unexpected}")


def pretrain(
    settings: PretrainSettings,
    folder: Path,
    progress: bool = True,
    threads: int | None = 1,
    logger: Logger | None = None,
) -> dict[str, Any]:
    """Train, evaluate on held-out captions and save; returns the record written to
    ``pretrain.json`` (losses, held-out ITM and MLM, seconds). Every step's losses go to
    ``pretrain_log.csv`` in ``folder`` and to ``logger`` when one is given.

    ``threads``: torch's intra-op threads while training (``None``: torch's default). One by
    default: on a shared 2-core machine two threads that wait for each other made a step
    3-15x slower than one thread (0.65 s); on an idle machine one thread costs at most 2x.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _pretrain(settings, folder, progress, logger)
    finally:
        torch.set_num_threads(previous)


def _pretrain(
    settings: PretrainSettings, folder: Path, progress: bool, logger: Logger | None
) -> dict[str, Any]:
    from vlprobe.pretrain.contrastive import train_region_embeddings
    from vlprobe.pretrain.data import PairCollator, held_out_pairs, training_pairs
    from vlprobe.pretrain.evaluate import evaluate
    from vlprobe.pretrain.module import UniterPretraining
    from vlprobe.pretrain.steplog import PretrainLog

    started, cpu_started = time.perf_counter(), time.process_time()
    for name in TRAINING_INPUTS:
        if not Path(getattr(settings, name)).exists():
            raise FileNotFoundError(
                f"model.pretrain.{name}={getattr(settings, name)} does not exist: point it (or "
                f"data.{name}, which it follows by default) at the training data"
            )
    tokenizer = load_tokenizer(None)
    pairs = training_pairs(
        settings.flickr30k,
        settings.visual_genome,
        settings.features,
        settings.vg_split,
        tokenizer,
        settings.feature_dim,
    )
    if len(pairs) < settings.batch_size:
        raise ValueError(
            f"model.pretrain.batch_size={settings.batch_size}: only {len(pairs)} training pairs"
        )
    log.info(
        "pre-training uniter-mini: %d pairs, %d contrastive steps, then %d steps of %d "
        "(MLM + ITM%s%s%s)",
        len(pairs),
        settings.contrastive_steps,
        settings.steps,
        settings.batch_size,
        " + MRFR" if settings.mrfr else "",
        " + WRA" if settings.wra else "",
        " + contrastive" if settings.contrastive else "",
    )
    steps = PretrainLog(logger)
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    model = build_random(mini_config(settings.layers, settings.feature_dim))
    init_from_minilm(model)
    contrastive = train_region_embeddings(
        model,
        pairs,
        tokenizer.all_special_ids,
        settings.contrastive_steps,
        lr=settings.contrastive_lr,
        seed=settings.seed,
        progress=progress,
        callbacks=[steps.callback("contrastive")],
    )
    module = UniterPretraining(
        model,
        lr=settings.lr,
        mrfr=settings.mrfr,
        wra=settings.wra,
        region_lr_scale=settings.region_lr_scale,
        region_recon=settings.region_recon,
        encoder_lr_scale=settings.encoder_lr_scale,
        contrastive=settings.contrastive,
        itm_pooling=settings.itm_pooling,
    )
    collate = PairCollator(
        pairs,
        tokenizer,
        settings.mask_prob,
        seed=settings.seed,
        phrase_mask_prob=settings.phrase_mask_prob,
        hard_prob=settings.hard_negative_prob,
        relation_prob=settings.relation_negative_prob,
        link_mask_prob=settings.link_mask_prob,
        mrfr=settings.mrfr,
        negative_prob=settings.itm_clean_prob or 0.5,
        clean_prob=settings.itm_clean_prob,
    )
    generator = torch.Generator().manual_seed(settings.seed)
    loader = DataLoader(
        range(len(pairs)),
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate,
        generator=generator,
    )
    trainer = pl.Trainer(
        max_steps=settings.steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        callbacks=[steps.callback("joint")],
    )
    if settings.steps:  # steps=0 saves the initialisation: text from MiniLM, regions untrained
        trainer.fit(module, loader)
    held_out = held_out_pairs(
        settings.flickr30k, settings.features, tokenizer, settings.feature_dim, split="val"
    )
    evaluation = evaluate(module, held_out, int(tokenizer.mask_token_id), seed=settings.seed)
    log.info("uniter-mini on held-out captions: %s", evaluation)
    if logger is not None:
        numbers = {f"pretrain/heldout/{k}": v for k, v in evaluation.items() if type(v) is float}
        logger.log_metrics(numbers, len(steps.rows))
    record = {
        "settings": asdict(settings),
        "training_data_sha256": training_data_hash(settings),
        "pairs": len(pairs),
        "images": len({p.image_id for p in pairs}),
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "final": {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()},
        "contrastive_loss": [round(x, 4) for x in contrastive[:: max(1, len(contrastive) // 20)]],
        "heldout": evaluation,
    }
    save(module, tokenizer, folder, record, steps)
    return record


def save(module: Any, tokenizer: Any, folder: Path, record: dict[str, Any], steps: Any) -> None:
    """The released layout: ``uniter.``-prefixed encoder beside its heads, float16; the record
    and every step's losses (a ``PretrainLog``) beside them."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    state = {f"{PREFIX}{k}": v.half() for k, v in module.uniter.state_dict().items()}
    for name, value in module.state_dict().items():
        if not name.startswith("uniter.") and name != "cls.predictions.decoder.weight":
            state[name] = value.half()
    torch.save(state, partial / CHECKPOINT)
    config = module.uniter.config
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
    keys += ("intermediate_size", "hidden_act", "hidden_dropout_prob", "type_vocab_size")
    keys += ("attention_probs_dropout_prob", "max_position_embeddings", "initializer_range")
    keys += ("layer_norm_eps", "img_dim")
    (partial / CONFIG).write_text(json.dumps({k: getattr(config, k) for k in keys}, indent=1))
    tokenizer.save_pretrained(str(partial / TOKENIZER))
    (partial / RECORD).write_text(json.dumps(record, indent=1))
    steps.write(partial / STEP_LOG)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def training_data_hash(settings: PretrainSettings) -> str:
    """sha256 over the bytes of the training data (as a cache's ``dataset_hash``).

    The same settings on other data are another model: rebuilding the demo with other
    ``data.scenes`` keeps its paths but moves images between splits, so a model trained on
    the old files could have seen today's test images. A missing input is left out here:
    pre-training names it.
    """
    paths = [Path(getattr(settings, name)) for name in TRAINING_INPUTS]
    return content_hash(path for path in paths if path.exists())


def model_folder(settings: PretrainSettings, out_dir: str | Path) -> Path:
    """``uniter-mini-<hash of the settings, the training data's content, the MiniLM it starts
    from and the vlprobe that trains it>`` (another version may train it otherwise, as it may
    extract a cache otherwise)."""
    parts = (settings.digest(), training_data_hash(settings), text_model_version(), __version__)
    blob = "|".join(parts)
    return Path(out_dir) / f"uniter-mini-{text_sha256(blob, 10)}"


def ensure_pretrained(
    settings: PretrainSettings,
    out_dir: str | Path,
    progress: bool = True,
    force: bool = False,
    threads: int | None = 1,
    logger: Logger | None = None,
) -> Path:
    """The folder of these settings' model on this data, pre-trained now if it does not exist
    (its steps' losses then also go to ``logger``)."""
    folder = model_folder(settings, out_dir)
    if not force and (folder / CHECKPOINT).is_file():
        return folder
    # two runs needing the same missing model (a parallel sweep): one trains, the other waits
    with exclusive_lock(folder, "uniter-mini"):
        if not force and (folder / CHECKPOINT).is_file():  # trained while this one waited
            return folder
        log.info("no pre-trained uniter-mini at %s: pre-training it now (once)", folder)
        record = pretrain(settings, folder, progress, threads, logger)
        log.info(
            "uniter-mini pre-trained in %.0f s (%.0f s CPU, %d thread(s)): %s; every step in %s",
            record["seconds"],
            record["cpu_seconds"],
            record["threads"],
            record["final"],
            folder / STEP_LOG,
        )
    return folder


def build_uniter_mini(
    pretrain: dict[str, Any],
    out_dir: str | Path,
    random_init: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
) -> UniterAdapter:
    """``model=uniter_mini``: the pre-trained model, or its architecture with random weights."""
    settings = PretrainSettings(**pretrain)
    if random_init:
        config = mini_config(settings.layers, settings.feature_dim)
        adapter = UniterAdapter.from_config(config, device=device, seed=seed)
    else:
        folder = ensure_pretrained(settings, out_dir, progress, threads=threads)
        adapter = UniterAdapter.from_checkpoint(
            folder / CHECKPOINT, folder / CONFIG, folder / TOKENIZER, device
        )
        adapter.notes["pretrain"] = (folder / RECORD).read_text()
    adapter.name = "uniter-mini"
    return adapter


def pretrain_from_config(model: Any, force: bool = False) -> Path:
    """``vlprobe pretrain``: the folder for a composed ``model=uniter_mini`` config."""
    settings = PretrainSettings(**OmegaConf.to_container(model.pretrain, resolve=True))
    return ensure_pretrained(
        settings, model.out_dir, bool(model.progress), force, model.get("threads", 1)
    )
