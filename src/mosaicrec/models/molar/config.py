"""Typed configuration of Molar (the ``model:`` section with ``name: molar``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mosaicrec.config import StrictModel

#: The paper's item prompt; ``{text}`` is the item's text, the item token is appended after it.
DEFAULT_PROMPT = "Compress the following item information into an embedding. Item information: {text}"
#: For vision-language backbones the image goes after the text (the processor's image token).
DEFAULT_IMAGE_PROMPT = ("Compress the text and image into embedding. Item information: {text} "
                        "Item image: {image}")


class BackboneConfig(StrictModel):
    """The language model (or vision-language model) shared by the item and user encoders."""

    model: str | None = Field(None, description="transformers name or folder; None = offline SmolLM2-135M-Instruct")
    revision: str | None = None
    random_init: dict[str, Any] | None = Field(
        None, description="a transformers config dict (with model_type): randomly initialised backbone "
                          "with a built-in character tokenizer (tests, ablations); excludes `model`")
    item_token: str = Field("[ITEM]", description="special token appended to every item prompt")


class ItemEncoderConfig(StrictModel):
    mode: Literal["frozen", "lora", "full"] = Field(
        "frozen", description="frozen: embeddings computed once and cached on disk by content hash; "
                              "lora/full: the batch's items are re-encoded with gradients")
    layers: int | None = Field(None, ge=1, description="use only the first N decoder layers (None = all)")
    prompt: str = DEFAULT_PROMPT
    image_prompt: str = DEFAULT_IMAGE_PROMPT
    max_tokens: int = Field(96, ge=8, description="item prompt length cap (the text is truncated)")
    batch_size: int = Field(32, ge=1, description="items per forward pass when encoding all items")
    pretrained: str | None = Field(None, description="folder written by `mosaicrec molar-pretrain` (MIRM)")
    cache: bool = Field(True, description="frozen mode: keep item embeddings on disk ($MOSAICREC_CACHE/molar)")
    normalise: Literal["whiten", "standardise"] = Field(
        "whiten", description="how the item states of the initial encoder are normalised before the adapter: "
                              "whiten (PCA whitening over all items: LM states concentrate in a few directions) "
                              "or standardise (per-dimension mean/std only, the session-2 behaviour)")
    whiten_eps: float = Field(1e-4, ge=0.0, description="whitening: eigenvalue floor, relative to the mean eigenvalue")


class UserEncoderConfig(StrictModel):
    mode: Literal["frozen", "lora", "full"] = "full"
    layers: int | None = Field(None, ge=1, description="use only the first N decoder layers (None = all)")
    user_token: Literal["prefix", "interleave"] = Field(
        "prefix", description="prefix: one [USER] token before the history, the state at every item is a "
                              "user embedding; interleave: [USER] after every item, read there (2x tokens)")


class AlignConfig(StrictModel):
    alpha: float = Field(0.0, ge=0.0, description="weight of the alignment loss (the benchmarks use 0.1); "
                                                 "0 = Molar without alignment (needs no ID model)")
    tau: float = Field(0.1, gt=0.0, description="InfoNCE temperature")
    positions: Literal["all", "last"] = Field("all", description="align every target position, or each window's last")
    max_pairs: int = Field(512, ge=2, description="cap on aligned positions per batch (random subset)")
    id_run: str | None = Field(None, description="run directory of a trained ID model (any registered model)")
    id_bench: str | None = Field(None, description="benchmark whose run (same seed) is the ID model; "
                                                   "`mosaicrec bench` trains it first or reuses it")
    id_overrides: list[str] = Field(default_factory=list, description="dotted overrides for id_bench")


class LoraConfig(StrictModel):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class MolarConfig(StrictModel):
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    item_encoder: ItemEncoderConfig = Field(default_factory=ItemEncoderConfig)
    user_encoder: UserEncoderConfig = Field(default_factory=UserEncoderConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    loss: Literal["bce", "sampled_softmax"] = Field(
        "sampled_softmax", description="bce: one sampled negative (paper); sampled_softmax: cosine scores, "
                                       "learnable temperature, shared negatives (official code)")
    n_negatives: int = Field(256, ge=1, description="shared uniform negatives per batch (sampled_softmax)")
    temperature: float = Field(0.07, gt=0.0, description="initial temperature of sampled_softmax (learned)")
    head_lr: float | None = Field(
        1e-3, gt=0, description="learning rate of the new layers (adapters, projections, [USER], temperature); "
                                "None = train.lr (the backbone always uses train.lr)")
    bf16: bool = Field(True, description="bf16 autocast for the backbone (CPU with avx512_bf16, or GPU)")
    grad_checkpointing: bool = Field(False, description="recompute backbone activations in backward")
    windows_per_user: int | None = Field(
        None, ge=1, description="history cap: train on each user's most recent N windows only")
