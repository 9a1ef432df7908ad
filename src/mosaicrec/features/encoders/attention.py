"""Attention for transformers text encoders on the CPU: plain matmul-softmax for short texts.

PyTorch's fused CPU attention kernel (``scaled_dot_product_attention``, transformers' default
"sdpa") works in blocks sized for long sequences; on a batch of ~53 product titles of ~19 tokens
(12 heads) it cost more than the plain ``softmax(QK^T / sqrt(d)) V`` of transformers' "eager"
implementation, most of all under bfloat16 autocast: MiniLM batched encoding with two threads on
this machine ran 854 titles/s with sdpa and 1025/s with eager attention (docs/features.md). For
long texts the fused kernel wins (bfloat16, 150-240-word texts: 38 vs 27 texts/s, one thread),
so :data:`NAME` dispatches per batch: sequences of at most :data:`SHORT_TOKENS` tokens take the
plain path, longer ones the model's usual sdpa function. Both get the same boolean padding mask.
"""

from __future__ import annotations

from typing import Any

NAME = "mosaicrec_text"
SHORT_TOKENS = 64


def _attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
               dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """``query`` [B, H, Lq, Dh], ``key``/``value`` [B, H, Lk, Dh], ``attention_mask`` [B, 1, Lq, Lk]
    bool (True = attend) or None -> ([B, Lq, H, Dh], None), as transformers' attention functions."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.shape[2] > SHORT_TOKENS or module.training:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scale  # [B, H, Lq, Lk]
    if attention_mask is not None:
        mask = attention_mask[..., : key.shape[-2]]  # [B, 1, Lq, Lk] bool
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)  # [B, H, Lq, Lk] (float32 under autocast)
    out = torch.matmul(weights.to(value.dtype), value)  # [B, H, Lq, Dh]
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register :data:`NAME` with transformers (attention function + its boolean sdpa mask)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, _attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def use_short_text_attention(model: Any) -> bool:
    """Switch a transformers model that uses "sdpa" to :data:`NAME` (in place); False if it can't."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    try:
        model.set_attn_implementation(register())
    except (ValueError, ImportError, AttributeError, TypeError):
        return False
    return True
