"""``lm_seqrec``: a text-based sequential recommender on one language model.

See :mod:`mosaicrec.models.xcross.text_base` for the towers, scoring and losses. Fine-tuning
``mode``: ``frozen`` (the LM is fixed, a linear head on the history vector trains), ``lora``
(peft LoRA adapters on ``lora_targets`` train; the saved adapter folder is a standard peft
adapter, see :meth:`LMSeqRec.save_adapter`), ``full`` (every weight trains). ``init_adapter``
starts from a saved peft adapter (trainable in ``lora`` mode, frozen otherwise). This is also
the "LoRA fine-tuned on the target" baseline of X-Cross and the trainer of its source adapters.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator

from mosaicrec.models.base import ModelContext
from mosaicrec.models.xcross.backbone import lora_targets
from mosaicrec.models.xcross.text_base import TextSeqConfig, TextSeqRec, example_fields
from mosaicrec.registry import MODELS


class LMSeqRecConfig(TextSeqConfig):
    mode: Literal["frozen", "lora", "full"] = "lora"
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_targets: list[str] | None = Field(None, description="module names; default: attention query/value")
    init_adapter: str | None = Field(None, description="a saved peft adapter folder to start from")

    @model_validator(mode="after")
    def _check(self) -> LMSeqRecConfig:
        if self.mode == "full" and self.item_tower == "frozen":
            raise ValueError("mode 'full' changes the base model: item_tower 'frozen' needs mode frozen or lora")
        return self


_EXAMPLE: dict[str, str] = {}


def example_backbone(kind: str = "bert") -> str:
    """A tiny random BERT / Llama folder (made once per process) for registry-wide tests."""
    if kind not in _EXAMPLE:
        import tempfile

        from mosaicrec.models.xcross.tiny import tiny_backbone

        _EXAMPLE[kind] = str(tiny_backbone(Path(tempfile.mkdtemp(prefix=f"mosaicrec-tiny-{kind}-")), kind))
    return _EXAMPLE[kind]


@MODELS.register("lm_seqrec")
class LMSeqRec(TextSeqRec):
    Config = LMSeqRecConfig

    def __init__(self, cfg: LMSeqRecConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        self.cfg: LMSeqRecConfig = cfg
        base = self._base[0]
        self.peft = cfg.mode == "lora" or cfg.init_adapter is not None
        if cfg.init_adapter is not None:
            from peft import PeftModel

            if not (Path(cfg.init_adapter) / "adapter_config.json").exists():
                raise FileNotFoundError(f"{cfg.init_adapter}: no adapter_config.json (not a peft adapter folder)")
            self.lm = PeftModel.from_pretrained(base, cfg.init_adapter, is_trainable=cfg.mode == "lora")
        elif cfg.mode == "lora":
            from peft import LoraConfig, get_peft_model

            lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=lora_targets(base, cfg.lora_targets), bias="none")
            self.lm = get_peft_model(base, lcfg)
        else:
            self.lm = base
        if cfg.mode == "frozen":
            for p in self.lm.parameters():
                p.requires_grad_(False)
        elif cfg.mode == "full":
            for p in self.lm.parameters():
                p.requires_grad_(True)
        self.head = self.make_head(frozen_lm=cfg.mode == "frozen")

    @classmethod
    def example_context(cls, n_items: int, max_len: int) -> ModelContext:
        import numpy as np

        item_domain = np.zeros(n_items + 1, dtype=np.int8)
        item_domain[0] = -1
        return ModelContext(n_items=n_items, n_users=6, n_domains=1, item_domain=item_domain, max_len=max_len,
                            domains=["A"], extra={"item_fields": example_fields(n_items),
                                                  "backbone": example_backbone()})

    def history_forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, D]

    def item_forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx = self.lm.disable_adapter() if (self.peft and self.cfg.item_tower == "frozen") else contextlib.nullcontext()
        grad = torch.enable_grad() if self.items_trainable() else torch.no_grad()
        with ctx, grad:
            return self.lm(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, D]

    def save_adapter(self, folder: str | Path) -> Path:
        """Write the LoRA adapter as a standard peft folder (adapter_config.json +
        adapter_model.safetensors), atomically."""
        if not self.peft:
            raise ValueError(f"mode {self.cfg.mode!r} has no adapter to save")
        import os
        import shutil
        import tempfile

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            self.lm.save_pretrained(str(tmp))
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return folder
