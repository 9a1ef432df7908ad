"""Loading the Molar backbone: a transformers causal LM or vision-language model, by name or folder.

``load_backbone`` returns the model with the item token added to its tokenizer, optionally cut
to its first N decoder layers (the CPU compromise; the final norm is kept), plus what the
encoders need: the tokenizer or processor, the base model (no LM head) that maps token ids (and
pixels) to hidden states, and its text decoder, which also reads ``inputs_embeds``.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from mosaicrec.models.molar.config import BackboneConfig, LoraConfig
from mosaicrec.utils import hash_obj

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


@dataclass
class Backbone:
    lm: nn.Module  # the full transformers model (with LM head), for MIRM pre-training
    base: nn.Module  # token ids (+ pixel_values) -> last_hidden_state [B, T, H]
    decoder: nn.Module  # the text decoder: inputs_embeds -> last_hidden_state [B, T, H]
    tokenizer: Any
    processor: Any | None  # vision-language models only
    item_token_id: int

    @property
    def hidden(self) -> int:
        config: Any = self.decoder.config
        return int(config.hidden_size)

    @property
    def is_vlm(self) -> bool:
        return self.processor is not None

    @property
    def image_token(self) -> str | None:
        return getattr(self.processor, "image_token", None) if self.processor is not None else None


def char_tokenizer() -> Any:
    """A character-level tokenizer (printable ASCII) for randomly initialised backbones."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate([PAD, EOS, UNK, *string.printable])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def _folder_key(folder: str) -> str:
    """Content key of a local model folder (config + size and head of every weight file)."""
    root = Path(folder)
    parts = []
    for p in sorted(root.glob("*.json")) + sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        with open(p, "rb") as f:
            parts.append(f"{p.name}:{p.stat().st_size}:{hashlib.sha256(f.read(1 << 20)).hexdigest()[:16]}")
    return hash_obj(parts)


def _is_vlm(config: Any) -> bool:
    return getattr(config, "vision_config", None) is not None


def _load_pretrained(path: str, revision: str | None) -> tuple[Any, Any, Any]:
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    kw: dict[str, Any] = {"revision": revision} if revision else {}
    config = AutoConfig.from_pretrained(path, **kw)
    if _is_vlm(config):
        processor = AutoProcessor.from_pretrained(path, **kw)
        return AutoModelForImageTextToText.from_pretrained(path, **kw), processor.tokenizer, processor
    return AutoModelForCausalLM.from_pretrained(path, **kw), AutoTokenizer.from_pretrained(path, **kw), None


def _load_raw(cfg: BackboneConfig, pretrained: str | None) -> tuple[Any, Any, Any]:
    """(model, tokenizer, processor) before any change."""
    if pretrained is not None:
        if not Path(pretrained).is_dir():
            raise FileNotFoundError(f"{pretrained}: MIRM pre-training output folder not found "
                                    "(run `mosaicrec molar-pretrain` first)")
        lm, tok, proc = _load_pretrained(pretrained, None)
        return lm, tok, proc
    if cfg.random_init is not None:
        if cfg.model is not None:
            raise ValueError("model.backbone: give either `model` or `random_init`, not both")
        from transformers import AutoConfig, AutoModelForCausalLM

        spec = dict(cfg.random_init)
        model_type = spec.pop("model_type", None)
        if model_type is None:
            raise ValueError("model.backbone.random_init: missing key 'model_type' (e.g. llama)")
        tok = char_tokenizer()
        config = AutoConfig.for_model(model_type, **{"vocab_size": len(tok), **spec})
        return AutoModelForCausalLM.from_config(config), tok, None
    if cfg.model is None:
        from mosaicrec.features.augment.backends import SMOLLM2_GGUF, _load_gguf, smollm2_folder

        lm, tok = _load_gguf(smollm2_folder(), SMOLLM2_GGUF)  # fresh objects (not the shared cache)
        return lm, tok, None
    return _load_pretrained(cfg.model, cfg.revision)


def truncate_layers(decoder: nn.Module, n: int | None) -> None:
    """Keep the first ``n`` decoder layers (and the final norm); ``None`` keeps all."""
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ValueError(f"{type(decoder).__name__}: no `layers` list, cannot cut the backbone to {n} layers")
    if n is None or n >= len(layers):
        return
    decoder.layers = nn.ModuleList(list(layers)[:n])
    config: Any = decoder.config
    config.num_hidden_layers = n
    types = getattr(config, "layer_types", None)
    if isinstance(types, list):
        config.layer_types = types[:n]


def load_backbone(cfg: BackboneConfig, layers: int | None = None, pretrained: str | None = None) -> Backbone:
    """Load the backbone, add the item token, keep the first ``layers`` decoder layers."""
    lm, tok, proc = _load_raw(cfg, pretrained)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if cfg.item_token not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [cfg.item_token]})
        lm.resize_token_embeddings(len(tok), mean_resizing=False)
    item_id = int(tok.convert_tokens_to_ids(cfg.item_token))
    decoder = lm.get_decoder()
    truncate_layers(decoder, layers)
    base = getattr(lm, "model", None)
    base = decoder if base is None else base
    lm.eval()
    return Backbone(lm=lm, base=base, decoder=decoder, tokenizer=tok, processor=proc, item_token_id=item_id)


def set_trainable(module: nn.Module, mode: str, lora: LoraConfig) -> None:
    """``frozen``: no gradients; ``full``: every weight trains; ``lora``: peft LoRA adapters only."""
    if mode == "lora":
        from peft import LoraConfig as PeftLora
        from peft import inject_adapter_in_model

        inject_adapter_in_model(PeftLora(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                         target_modules=list(lora.target_modules)), module)
    for name, p in module.named_parameters():
        p.requires_grad_(mode == "full" or (mode == "lora" and "lora_" in name))


def enable_checkpointing(module: nn.Module) -> None:
    new = getattr(module, "activation_checkpointing_enable", None)  # transformers >= 5.x
    if new is not None:
        new(activation_checkpointing_kwargs={"use_reentrant": False})
        return
    old = getattr(module, "gradient_checkpointing_enable", None)
    if old is None:
        raise ValueError(f"{type(module).__name__} does not support gradient checkpointing")
    old(gradient_checkpointing_kwargs={"use_reentrant": False})


def backbone_identity(cfg: BackboneConfig, layers: int | None, pretrained: str | None) -> dict[str, Any]:
    """What determines the item encoder's weights, without loading it (for cache keys)."""
    if pretrained is not None:
        ident: dict[str, Any] = {"pretrained": str(Path(pretrained).resolve()), "key": _folder_key(pretrained)}
    elif cfg.model is None:
        from mosaicrec.features.augment.backends import SMOLLM2_GGUF, SMOLLM2_ID, _gguf_key, smollm2_folder

        ident = {"model": SMOLLM2_ID, "key": _gguf_key(Path(smollm2_folder()) / SMOLLM2_GGUF)}
    else:
        ident = {"model": cfg.model, "revision": cfg.revision}
        if Path(cfg.model).is_dir():
            ident["key"] = _folder_key(cfg.model)
    return {**ident, "item_token": cfg.item_token, "layers": layers}
