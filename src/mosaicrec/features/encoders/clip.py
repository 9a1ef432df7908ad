"""CLIP through transformers: text and image towers projected into one shared space."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mosaicrec.features.encoders.base import Encoder, to_numpy
from mosaicrec.registry import ENCODERS


@ENCODERS.register("clip")
class CLIPEncoder(Encoder):
    """``CLIPModel`` + its tokenizer and image processor, by hub id or local folder.

    Text and image vectors are the projected ``text_embeds`` / ``image_embeds`` (dimension
    ``projection_dim``), so item text and item image land in the same space.
    """

    modalities = ("text", "image")
    default_model: ClassVar[str] = "openai/clip-vit-base-patch32"

    def _load(self) -> Any:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        kw: dict[str, Any] = {"revision": self.cfg.revision} if self.cfg.revision else {}
        model = CLIPModel.from_pretrained(self.model_name, **kw).to(self.cfg.device).eval()  # type: ignore[arg-type]
        tok = AutoTokenizer.from_pretrained(self.model_name, **kw)
        proc = AutoImageProcessor.from_pretrained(self.model_name, **kw)
        return model, tok, proc

    @property
    def dim(self) -> int:
        return int(self.load()[0].config.projection_dim)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        model, tok, _ = self.load()
        max_len = self.cfg.max_length or model.config.text_config.max_position_embeddings
        outs = []
        for i in range(0, len(texts), self.cfg.batch_size):
            enc = tok(list(texts[i:i + self.cfg.batch_size]), padding=True, truncation=True,
                      max_length=max_len, return_tensors="pt").to(self.cfg.device)
            with torch.inference_mode(), self.autocast():
                feats = model.get_text_features(input_ids=enc["input_ids"],
                                                attention_mask=enc["attention_mask"])  # [b, P]
            outs.append(to_numpy(_pooled(feats), self.cfg.normalize))
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    def encode_images(self, images: list[Any]) -> np.ndarray:
        import torch

        model, _, proc = self.load()
        outs = []
        for i in range(0, len(images), self.cfg.batch_size):
            px = proc(images=list(images[i:i + self.cfg.batch_size]), return_tensors="pt")["pixel_values"]
            with torch.inference_mode(), self.autocast():
                feats = model.get_image_features(pixel_values=px.to(self.cfg.device))  # [b, P]
            outs.append(to_numpy(_pooled(feats), self.cfg.normalize))
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)


def _pooled(out: Any) -> Any:
    """transformers 5 may return a model output instead of a tensor from get_*_features."""
    if hasattr(out, "pooler_output"):
        return out.pooler_output
    return out
