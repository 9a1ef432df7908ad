"""Tiny randomly initialised backbones (BERT or Llama, character vocabulary) for tests/examples."""

from __future__ import annotations

import string
from pathlib import Path

CHARS = string.ascii_lowercase + string.digits + ".,;!-'"


def _vocab() -> dict[str, int]:
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS, *[f"##{c}" for c in CHARS],
             "coffee", "knife", "tea", "pan", "kitchen"]
    return {w: i for i, w in enumerate(words)}


def tiny_backbone(folder: Path, kind: str = "bert", seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Write a tiny random ``bert`` (encoder) or ``llama`` (decoder) + tokenizer to ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast, LlamaConfig, LlamaModel

    folder.mkdir(parents=True, exist_ok=True)
    tok = BertTokenizerFast(vocab=_vocab(), do_lower_case=True)
    torch.manual_seed(seed)
    if kind == "bert":
        model = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=2, intermediate_size=2 * hidden,
                                     max_position_embeddings=256))
    elif kind == "llama":
        model = LlamaModel(LlamaConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                       num_attention_heads=2, num_key_value_heads=2, intermediate_size=2 * hidden,
                                       max_position_embeddings=256, pad_token_id=0))
    else:
        raise ValueError(f"unknown tiny backbone kind {kind!r} (bert, llama)")
    model.eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
