"""The LightningModule wrapping any Recommender, with validation through the Evaluator.

Validation runs at the end of every ``val_every``-th training epoch (and the last one) on
split ``valid`` only; every overall metric is logged as ``val/<metric>`` so that
EarlyStopping and ModelCheckpoint (both checking at train-epoch end) can monitor it.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from mosaicrec.config import TrainConfig
from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import Recommender


class RecModule(L.LightningModule):
    def __init__(self, model: Recommender, train_cfg: TrainConfig, evaluator: Any | None) -> None:
        super().__init__()
        self.model = model
        self.tcfg = train_cfg
        self.evaluator = evaluator
        self.history: dict[int, dict[str, dict[str, float]]] = {}  # epoch -> val metrics
        self.timing: dict[int, dict[str, float]] = {}  # epoch -> {"train": s, "val": s}
        self._t0 = 0.0

    # ---- training -------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.model.on_epoch_start(self.current_epoch)
        self._t0 = time.perf_counter()

    def training_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        loss = self.model.loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(batch), sync_dist=True)
        return loss

    def transfer_batch_to_device(self, batch: SeqBatch, device: torch.device, dataloader_idx: int) -> SeqBatch:
        return batch.to(device)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = getattr(self.model, "param_groups", None)  # optional per-group learning rates
        params = groups(self.tcfg.lr) if callable(groups) else self.model.parameters()
        return torch.optim.AdamW(params, lr=self.tcfg.lr, weight_decay=self.tcfg.weight_decay,
                                 fused=self.tcfg.fused_optimizer or None)

    # ---- validation ------------------------------------------------------------------------
    def _should_validate(self) -> bool:
        epoch = self.current_epoch + 1
        return epoch % self.tcfg.val_every == 0 or epoch == self.trainer.max_epochs

    def on_train_epoch_end(self) -> None:
        if self.current_epoch in self.timing:
            # Resuming from a checkpoint written at this epoch's end: Lightning replays the
            # epoch-end hooks; the epoch was already validated and logged.
            return
        train_s = time.perf_counter() - self._t0
        self.log("epoch_seconds", train_s, on_epoch=True, sync_dist=False, rank_zero_only=True)
        val_s = 0.0
        if self.evaluator is not None and self._should_validate():
            t0 = time.perf_counter()
            result = self.evaluator.evaluate(self.model, device=self.device)
            self.model.train()
            val_s = time.perf_counter() - t0
            overall = result.metrics["overall"]
            if self.tcfg.monitor not in overall:
                raise ValueError(f"train.monitor {self.tcfg.monitor!r} is not an evaluation metric; "
                                 f"known: {sorted(overall)}")
            self.history[self.current_epoch] = result.metrics
            for k, v in overall.items():
                self.log(f"val/{k}", float(v), on_epoch=True, prog_bar=k == self.tcfg.monitor, sync_dist=True)
            self.log("val_seconds", val_s, on_epoch=True, rank_zero_only=True)
            loss = self.trainer.callback_metrics.get("train/loss")
            self.print(f"epoch {self.current_epoch}: train loss {float(loss) if loss is not None else float('nan'):.4f}, "
                       f"val {self.tcfg.monitor} {overall[self.tcfg.monitor]:.4f} "
                       f"(train {train_s:.1f} s, val {val_s:.1f} s)", flush=True)
        self.timing[self.current_epoch] = {"train": train_s, "val": val_s}

    # ---- state kept across --resume ----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mosaicrec"] = {"history": self.history, "timing": self.timing}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("mosaicrec", {})
        self.history = {int(k): v for k, v in state.get("history", {}).items()}
        self.timing = {int(k): v for k, v in state.get("timing", {}).items()}

    def best_epoch(self) -> int | None:
        """First epoch with the highest monitored value (ModelCheckpoint keeps the first best)."""
        best, best_v = None, float("-inf")
        for ep in sorted(self.history):
            v = self.history[ep]["overall"][self.tcfg.monitor]
            if v > best_v:
                best, best_v = ep, v
        return best
