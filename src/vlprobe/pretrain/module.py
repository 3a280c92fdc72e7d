"""UNITER pre-training objectives as one LightningModule: MLM + ITM (+ MRFR, WRA, contrastive).

Each batch mixes matched and mismatched pairs (see :class:`~vlprobe.pretrain.data.PairCollator`)
and runs one forward pass: masked words are predicted in matched pairs (MLM, decoder tied to
the word embeddings as in BERT and UNITER), every pair is classified matched or not from the
pooled [CLS] (ITM), masked regions' features are regressed (MRFR, optional) and word and
region states are pulled together in matched pairs and apart in mismatched ones by optimal
transport (WRA, optional); captions and images are told apart on the embeddings
(word-region contrastive, optional; :mod:`vlprobe.pretrain.contrastive`).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from transformers import get_linear_schedule_with_warmup
from transformers.models.bert.modeling_bert import BertOnlyMLMHead

from vlprobe.models.uniter import UniterModel
from vlprobe.pretrain.contrastive import TEMPERATURE, contrastive_loss, late_interaction
from vlprobe.pretrain.wra import ot_distance


class UniterPretraining(pl.LightningModule):
    def __init__(
        self,
        model: UniterModel,
        lr: float = 2e-4,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        mrfr: bool = True,
        wra: float = 0.0,
        region_lr_scale: float = 1.0,
        region_recon: float = 0.0,
        encoder_lr_scale: float = 1.0,
        contrastive: float = 0.0,
        temperature: float = TEMPERATURE,
        itm_pooling: str = "cls",
    ) -> None:
        super().__init__()
        self.uniter = model
        config = model.config
        self.cls = BertOnlyMLMHead(config)
        # word embeddings (tied to the MLM decoder) stay the text model's: a 900-caption corpus
        # should not move a 30k vocabulary, and the optimizer step is 3x cheaper without them
        model.embeddings.word_embeddings.weight.requires_grad_(False)
        self.cls.predictions.decoder.weight = model.embeddings.word_embeddings.weight  # tied
        self.itm_output = nn.Linear(config.hidden_size, 2)
        regress = mrfr or region_recon > 0
        self.feat_regress = nn.Linear(config.hidden_size, config.img_dim) if regress else None
        self.mrfr = mrfr
        for head in (self.cls.predictions.transform, self.itm_output, self.feat_regress):
            if head is not None:
                head.apply(model._init_weights)
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.wra = wra  # weight of word-region alignment (UNITER: 0.1); 0 = off
        self.region_lr_scale = region_lr_scale
        # the text-initialised encoder's learning rate is lr x this; 0 freezes it, so that only
        # the region side learns to speak to the text model's heads (as in Frozen, 2021)
        self.encoder_lr_scale = encoder_lr_scale
        if encoder_lr_scale == 0:
            for name, param in model.named_parameters():
                if not name.startswith("img_embeddings."):
                    param.requires_grad_(False)
        # weight of regressing every *visible* region's own features from its last state: keeps
        # what the detector saw in the region states, which masked objectives alone let fade
        self.region_recon = region_recon
        # weight of word-region contrastive learning on the embeddings during joint training
        # (vlprobe.pretrain.contrastive): keeps the regions where the words can find them
        self.contrastive, self.temperature = contrastive, temperature
        # what ITM reads: "cls" (UNITER's pooled [CLS]) or "mean" (the mean of the last layer's
        # text and region states). MiniLM's [CLS] is all but constant across inputs (it was
        # trained for mean pooling: std 0.004 across captions at norm 10.6 after the contrastive
        # stage, the pooled output 0.0007), so an ITM head on it sees no signal and stays at
        # ln 2; the mean varies 40x more (docs/models.md, "Held-out evaluation")
        self.itm_pooling = itm_pooling
        self.step_values: dict[str, float] = {}  # this step's, for pretrain_log.csv

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.uniter(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            img_feat=batch["img_feat"],
            img_pos_feat=batch["img_pos_feat"],
            img_mask=batch["img_mask"],
            img_masked=batch["img_masked"],
        )
        n_text = batch["input_ids"].shape[1]
        words = out.last_hidden_state[:, :n_text]  # text comes first at the same positions
        selected = batch["mlm_labels"] != -100
        losses = {}
        if selected.any():
            logits = self.cls(words[selected])
            losses["mlm"] = F.cross_entropy(logits, batch["mlm_labels"][selected])
        rows = batch["itm_mask"].bool() if "itm_mask" in batch else batch["itm_labels"] >= 0
        if rows.any():  # the pairs ITM reads: every pair, or the unmasked ones (PairCollator)
            itm_logits, itm_labels = self.itm_logits(out)[rows], batch["itm_labels"][rows]
            losses["itm"] = F.cross_entropy(itm_logits, itm_labels)
            losses["itm_acc"] = (itm_logits.argmax(-1) == itm_labels).float().mean()
        regions = region_states(out.last_hidden_state, batch["attention_mask"], batch["img_mask"])
        if self.wra:
            distance = ot_distance(words, regions, _word_mask(batch), batch["img_mask"])
            sign = batch["itm_labels"].to(distance.dtype) * 2 - 1  # matched: pull, else push
            losses["wra"] = self.wra * (sign * distance).mean()
        if self.mrfr and batch["img_masked"].any():
            masked = batch["img_masked"].bool()
            predicted = self.feat_regress(regions[masked])
            losses["mrfr"] = F.mse_loss(predicted, batch["img_target"][masked])
        if self.region_recon:
            visible = batch["img_mask"].bool() & ~batch["img_masked"].bool()
            predicted = self.feat_regress(regions[visible])
            losses["recon"] = self.region_recon * F.mse_loss(
                predicted, batch["img_target"][visible]
            )
        if self.contrastive and int(batch["itm_labels"].sum()) >= 2:  # a caption and a negative
            losses["contrastive"] = self.contrastive * self._contrastive(batch)
        return losses

    def itm_logits(self, out: Any) -> torch.Tensor:
        """(B, 2) mismatched / matched logits from the pooled [CLS] or the mean state."""
        if self.itm_pooling == "cls":
            return self.itm_output(out.pooler_output)
        mask = out.attention_mask[..., None].to(out.last_hidden_state.dtype)
        mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.itm_output(mean)

    def _contrastive(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """InfoNCE between the matched pairs' captions and images, on the embeddings."""
        matched = batch["itm_labels"] == 1
        words = self.uniter.embed_text(batch["input_ids"][matched])
        word_mask = _word_mask(batch)[matched] * (batch["mlm_labels"][matched] == -100)
        regions = self.uniter.embed_regions(
            batch["img_feat"][matched], batch["img_pos_feat"][matched], batch["img_masked"][matched]
        )
        scores = late_interaction(words.detach(), word_mask, regions, batch["img_mask"][matched])
        return contrastive_loss(scores, self.temperature)

    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        losses = self.losses(batch)
        for name, value in losses.items():
            self.log(
                f"train/{name}",
                value,
                prog_bar=name in ("mlm", "itm"),
                batch_size=len(batch["itm_labels"]),
            )
        total = sum(v for k, v in losses.items() if k != "itm_acc")
        # this step's values for pretrain_log.csv (vlprobe.pretrain.steplog)
        self.step_values = {k: float(v.detach()) for k, v in losses.items()}
        self.step_values["loss"] = float(total.detach())
        rows = batch["itm_mask"].bool() if "itm_mask" in batch else slice(None)
        # the matched share of the pairs ITM reads (a share far from 0.5: a class imbalance)
        self.step_values["itm_matched_share"] = float(batch["itm_labels"][rows].float().mean())
        return total

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's optimizer/scheduler dict
        # (learning-rate scale, weight decay?) -> parameters: the region side starts random,
        # so it may take larger steps than the text side, which starts from MiniLM; the heads
        # start random too and take the base rate
        groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if param.requires_grad:
                decays = param.ndim >= 2 and "LayerNorm" not in name
                groups.setdefault((self._lr_scale(name), decays), []).append(param)
        optimizer = torch.optim.AdamW(
            [
                {
                    "params": params,
                    "weight_decay": self.weight_decay if decays else 0.0,
                    "lr": self.lr * scale,
                }
                for (scale, decays), params in groups.items()
            ],
            lr=self.lr,
            foreach=True,
        )
        total = int(self.trainer.max_steps)
        schedule = get_linear_schedule_with_warmup(
            optimizer, int(self.warmup_fraction * total), total
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _lr_scale(self, name: str) -> float:
        if name.startswith("uniter.img_embeddings."):
            return self.region_lr_scale
        return self.encoder_lr_scale if name.startswith("uniter.") else 1.0


def _word_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The caption's words: the attention mask without [CLS] and [SEP]."""
    word_mask = batch["attention_mask"].clone()
    word_mask[:, 0] = 0  # [CLS]
    word_mask.scatter_(1, batch["attention_mask"].sum(1, keepdim=True) - 1, 0)  # [SEP]
    return word_mask


def region_states(
    hidden: torch.Tensor, text_mask: torch.Tensor, img_mask: torch.Tensor
) -> torch.Tensor:
    """(B, N, d): region ``r`` of example ``b`` sits at ``n_text[b] + r`` of the joint sequence."""
    n_text = text_mask.sum(1)
    index = n_text[:, None] + torch.arange(img_mask.shape[1], device=hidden.device)[None]
    index = index.clamp(max=hidden.shape[1] - 1)
    return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
