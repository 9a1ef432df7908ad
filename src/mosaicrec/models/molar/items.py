"""Item encoding: the item prompt ending in the item token; its final hidden state is the embedding.

Frozen item encoders compute every item's embedding once; the table is kept on disk under
``$MOSAICREC_CACHE/molar/<key>.npy`` where the key hashes everything that determines it (backbone
identity and layer count, prompts, length cap, item token, the texts, the image files' bytes).
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mosaicrec.models.molar.backbone import Backbone
from mosaicrec.models.molar.config import ItemEncoderConfig
from mosaicrec.utils import atomic_path, hash_obj


@dataclass
class ItemContent:
    """Item text (and image paths) by item id; index 0 is padding."""

    texts: list[str]  # [N+1]
    images: list[str | None] = field(default_factory=list)  # [N+1] or empty (no images)

    def image(self, i: int) -> str | None:
        return self.images[i] if self.images else None


def autocast(enabled: bool, device: torch.device | str = "cpu") -> Any:
    dev = torch.device(device).type
    return torch.autocast(dev, dtype=torch.bfloat16) if enabled else nullcontext()


def _truncate(tok: Any, texts: list[str], max_tokens: int) -> list[str]:
    ids = tok(texts, add_special_tokens=False, truncation=True, max_length=max_tokens)["input_ids"]
    return [t if len(i) < max_tokens else tok.decode(i) for t, i in zip(texts, ids, strict=True)]


def _open_image(path: str) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: item image not readable ({e})") from None


def item_inputs(bb: Backbone, cfg: ItemEncoderConfig, content: ItemContent, ids: list[int]) -> dict[str, torch.Tensor]:
    """Tokenised prompts (left-padded) of items ``ids``; images go in for vision-language models."""
    texts = _truncate(bb.tokenizer, [content.texts[i] or "" for i in ids], cfg.max_tokens)
    prompts, images = [], []
    for i, text in zip(ids, texts, strict=True):
        path = content.image(i) if bb.is_vlm else None
        if path:
            prompts.append(cfg.image_prompt.format(text=text, image=bb.image_token) + bb.tokenizer.convert_ids_to_tokens(bb.item_token_id))
            images.append(_open_image(path))
        else:
            prompts.append(cfg.prompt.format(text=text) + bb.tokenizer.convert_ids_to_tokens(bb.item_token_id))
    if bb.processor is not None:
        kw: dict[str, Any] = {"images": images} if images else {}
        enc = bb.processor(text=prompts, padding=True, return_tensors="pt", **kw)
    else:
        enc = bb.tokenizer(prompts, padding=True, return_tensors="pt")
    return dict(enc)


def item_token_positions(input_ids: torch.Tensor, item_token_id: int) -> torch.Tensor:
    """[M] index of the LAST item token in each row; an error if a row has none (prompt cut)."""
    hit = input_ids == item_token_id  # [M, T]
    if not bool(hit.any(1).all()):
        raise ValueError("an item prompt lost its item token (check item_encoder.max_tokens and the prompt)")
    T = input_ids.shape[1]
    return T - 1 - hit.flip(1).int().argmax(1)  # [M]


def encode(bb: Backbone, enc: dict[str, torch.Tensor], bf16: bool) -> torch.Tensor:
    """[M, H] final hidden state at the item token of each prompt."""
    dev = next(bb.base.parameters()).device
    enc = {k: v.to(dev) for k, v in enc.items()}
    pos = item_token_positions(enc["input_ids"], bb.item_token_id)  # [M]
    with autocast(bf16, dev):
        h = bb.base(**enc).last_hidden_state  # [M, T, H]
    return h[torch.arange(h.shape[0], device=dev), pos].float()  # [M, H]


def encode_all(bb: Backbone, cfg: ItemEncoderConfig, content: ItemContent, bf16: bool,
               progress: bool = False) -> np.ndarray:
    """[N+1, H] float32 embeddings of every item (row 0 zeros), without gradients."""
    n = len(content.texts) - 1
    out = np.zeros((n + 1, bb.hidden), np.float32)
    # Sort by text length so batches pad little; the order does not change any row.
    order = sorted(range(1, n + 1), key=lambda i: len(content.texts[i] or ""))
    steps = range(0, n, cfg.batch_size)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="molar items", unit="batch")
    was_training = bb.base.training
    bb.base.eval()
    with torch.inference_mode():
        for s in steps:
            ids = order[s:s + cfg.batch_size]
            out[ids] = encode(bb, item_inputs(bb, cfg, content, ids), bf16).cpu().numpy()
    bb.base.train(was_training)
    return out


def cache_key(bb_identity: dict[str, Any], cfg: ItemEncoderConfig, content: ItemContent, bf16: bool) -> str:
    images: list[str | None] = []
    for p in content.images:
        if p and Path(p).is_file():
            images.append(hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16])
        else:
            images.append(p)
    return hash_obj({"backbone": bb_identity, "prompt": cfg.prompt, "image_prompt": cfg.image_prompt,
                     "max_tokens": cfg.max_tokens, "bf16": bf16, "texts": hash_obj(content.texts),
                     "images": hash_obj(images), "version": 1})


def cache_dir() -> Path:
    from mosaicrec.features.augment.backends import cache_root

    return cache_root() / "molar"


def load_cached(key: str, n_items: int, hidden: int) -> np.ndarray | None:
    path = cache_dir() / f"{key}.npy"
    if not path.exists():
        return None
    arr = np.load(path)
    if arr.shape != (n_items + 1, hidden):
        raise ValueError(f"{path}: cached item embeddings have shape {arr.shape}, expected {(n_items + 1, hidden)}")
    return arr


def save_cached(key: str, arr: np.ndarray) -> Path:
    path = cache_dir() / f"{key}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)
    return path
