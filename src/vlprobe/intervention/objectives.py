"""Amnesic probing at the objective level: a pre-trained model's own heads under erasure.

Elazar et al. (2021) measure what erasing a property changes in the model's own task. For
uniter-mini (the one model here with its pre-training heads) that is masked-phrase MLM with the
true image and ITM on held-out captions, evaluated by pre-training's own function
(:func:`vlprobe.pretrain.evaluate.evaluate`) with the eraser hooked at layer ``L``: the same
captions, masked phrases and other images for every eraser (one seed), so plain, LEACE and
random differ only by what was erased.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlprobe.intervention.erasers import Eraser
from vlprobe.intervention.hooks import erasing
from vlprobe.models.tokenization import load_tokenizer
from vlprobe.models.uniter import load_checkpoint
from vlprobe.pretrain.data import Pair, held_out_pairs
from vlprobe.pretrain.evaluate import evaluate
from vlprobe.pretrain.uniter_mini import CHECKPOINT, CONFIG, RECORD, TOKENIZER

#: the evaluation's numbers reported per intervention (``mlm_other_image``: the text-only floor)
OBJECTIVES = ("mlm_true_image", "mlm_other_image", "itm_acc", "itm_ranking")


@dataclass
class HeldOut:
    """A pre-trained model with its heads, and the held-out captions it is evaluated on."""

    module: Any  # vlprobe.pretrain.module.UniterPretraining, in eval mode
    pairs: list[Pair]
    mask_id: int
    seed: int  # pre-training's: the evaluation draws its captions and masks from it


def load_held_out(folder: Path) -> HeldOut:
    """uniter-mini's saved encoder and heads (``pretrain.json``'s settings) and the validation
    captions its pre-training evaluation read."""
    from vlprobe.pretrain.module import UniterPretraining

    record = json.loads((folder / RECORD).read_text())
    settings = record["settings"]
    model, _ = load_checkpoint(folder / CHECKPOINT, folder / CONFIG)
    module = UniterPretraining(
        model,
        mrfr=settings["mrfr"],
        region_recon=settings["region_recon"],
        itm_pooling=settings["itm_pooling"],
    )
    state = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"cls.predictions.decoder.weight"}:  # tied: the embeddings
        raise ValueError(
            f"{folder / CHECKPOINT}: not uniter-mini's encoder and heads (missing "
            f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    module.eval()
    tokenizer = load_tokenizer(folder / TOKENIZER)
    pairs = held_out_pairs(
        settings["flickr30k"], settings["features"], tokenizer, settings["feature_dim"], "val"
    )
    return HeldOut(module, pairs, int(tokenizer.mask_token_id), int(settings["seed"]))


def evaluate_erased(
    held: HeldOut, eraser: Eraser | None, layer: int, captions: int = 300
) -> dict[str, Any]:
    """Pre-training's held-out evaluation with ``eraser`` hooked at hidden layer ``layer``
    (None: the plain model)."""
    hook = nullcontext() if eraser is None else erasing(held.module.uniter, eraser, layer)
    with hook:
        return evaluate(held.module, held.pairs, held.mask_id, captions=captions, seed=held.seed)
