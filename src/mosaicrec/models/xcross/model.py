"""``xcross``: X-Cross (Hadad et al., SIGIR 2025) -- frozen per-domain LoRA adapters over one
shared base language model, integrated layer by layer for a new target domain.

The source adapters are standard peft LoRA folders (e.g. written by ``lm_seqrec``'s
``save_adapter`` after training on a source domain), all for the same base model. The target
model runs the n adapters side by side (stacked in the batch, one pass through each shared
base layer, see :mod:`mosaicrec.models.xcross.multilora`); after every transformer layer an
:class:`~mosaicrec.models.xcross.multilora.Integrator` mixes the n streams. The history vector
is the mean of the n pooled streams. Only the integrators (and the optional head) train; the
base weights and the adapters are frozen. Item tower: as in ``lm_seqrec`` (``frozen`` = the
base model without adapters, ``shared`` = the integrated model).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from mosaicrec.models.base import ModelContext
from mosaicrec.models.xcross.backbone import layer_list
from mosaicrec.models.xcross.multilora import Integrator, MultiLoRALinear, StreamState, read_peft_adapter
from mosaicrec.models.xcross.text_base import TextSeqConfig, TextSeqRec
from mosaicrec.registry import MODELS


class XCrossConfig(TextSeqConfig):
    adapters: list[str] = Field(default_factory=list, description="peft LoRA adapter folders, one per source domain")
    integrator_init: str = Field("identity", description="identity | average | select:K (initial S of every integrator)")
    integrator_input: Literal["raw", "layernorm", "unit"] = Field(
        "raw", description="projection input: raw concatenation, per-stream LayerNorm, or LayerNorm / sqrt(n*D)")
    integrator_form: Literal["bias", "residual"] = Field(
        "bias", description="bias: S = Wx + b (b starts at the init); residual: S = S_init + Wx + b (W, b start at 0)")


def _get(root: torch.nn.Module, path: str) -> tuple[torch.nn.Module, str, torch.nn.Module]:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    return parent, name, getattr(parent, name)


@MODELS.register("xcross")
class XCross(TextSeqRec):
    Config = XCrossConfig

    def __init__(self, cfg: XCrossConfig, ctx: ModelContext) -> None:
        super().__init__(cfg, ctx)
        self.cfg: XCrossConfig = cfg
        paths = list(cfg.adapters) or list(ctx.extra.get("adapters", []))
        if not paths:
            raise ValueError("xcross needs at least one source adapter folder (model.adapters)")
        adapters = [read_peft_adapter(p) for p in paths]
        self.n_streams = len(adapters)
        self.lm = self._base[0]
        for p in self.lm.parameters():
            p.requires_grad_(False)
        self.state = StreamState()
        modules = sorted(adapters[0].weights)
        for a in adapters[1:]:
            if sorted(a.weights) != modules:
                raise ValueError(f"{a.path}: adapts modules {sorted(a.weights)[:4]}..., "
                                 f"{adapters[0].path} adapts {modules[:4]}...: all adapters need the same targets")
        for mod in modules:
            try:
                parent, name, base = _get(self.lm, mod)
            except AttributeError:
                raise ValueError(f"{adapters[0].path}: module {mod!r} not in the base model "
                                 f"({type(self.lm).__name__}): adapter of another base model?") from None
            if not isinstance(base, torch.nn.Linear):
                raise ValueError(f"{adapters[0].path}: module {mod!r} is {type(base).__name__}, not Linear")
            wrapped = MultiLoRALinear(base, [a.weights[mod][0] for a in adapters],
                                      [a.weights[mod][1] for a in adapters], [a.scale for a in adapters], self.state)
            setattr(parent, name, wrapped)
        layers = layer_list(self.lm)
        n = self.n_streams
        self.integrators = torch.nn.ModuleList(Integrator(n, self.dim, cfg.integrator_init, cfg.integrator_input,
                                                                  cfg.integrator_form) for _ in layers)
        for layer, integ in zip(layers, self.integrators, strict=True):
            layer.register_forward_hook(self._make_hook(integ))
        self.head = self.make_head(frozen_lm=False)
        self.adapter_paths = [str(a.path) for a in adapters]

    def _make_hook(self, integ: torch.nn.Module) -> Any:
        def hook(_module: torch.nn.Module, _args: Any, output: Any) -> Any:
            n = self.state.n
            if n == 0:
                return output
            h = output[0] if isinstance(output, tuple) else output  # [n*B, T, D]
            mixed = integ(h.reshape(n, -1, *h.shape[1:])).reshape(h.shape)  # [n*B, T, D]
            return (mixed, *output[1:]) if isinstance(output, tuple) else mixed
        return hook

    @classmethod
    def example_context(cls, n_items: int, max_len: int) -> ModelContext:
        from mosaicrec.models.xcross.lm_seqrec import LMSeqRec

        ctx = LMSeqRec.example_context(n_items, max_len)
        ctx.extra["adapters"] = example_adapters(ctx)
        return ctx

    def streams(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [n, B, T, D] the integrated per-domain hidden states of the last layer."""
        n = self.n_streams
        self.state.n = n
        try:
            out = self.lm(input_ids=ids.repeat(n, 1), attention_mask=mask.repeat(n, 1)).last_hidden_state
        finally:
            self.state.n = 0
        return out.reshape(n, ids.shape[0], *out.shape[1:])  # [n, B, T, D]

    def history_forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.streams(ids, mask).mean(0)  # [B, T, D]

    def item_forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.cfg.item_tower == "frozen":
            with torch.no_grad():
                return self.lm(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, D]
        grad = torch.enable_grad() if self.items_trainable() else torch.no_grad()
        with grad:
            return self.history_forward(ids, mask)

    def integrator_parameters(self) -> int:
        return sum(p.numel() for p in self.integrators.parameters())


_EXAMPLE_ADAPTERS: dict[str, list[str]] = {}


def example_adapters(ctx: ModelContext, n: int = 2) -> list[str]:
    """n random (non-zero) peft LoRA adapters for the example backbone, written once per process."""
    key = str(ctx.extra["backbone"])
    if key not in _EXAMPLE_ADAPTERS:
        import tempfile
        from pathlib import Path

        from mosaicrec.models.xcross.lm_seqrec import LMSeqRec, LMSeqRecConfig

        root = Path(tempfile.mkdtemp(prefix="mosaicrec-adapters-"))
        out = []
        for m in range(n):
            torch.manual_seed(100 + m)
            src = LMSeqRec(LMSeqRecConfig(mode="lora", lora_r=4), ctx)
            with torch.no_grad():
                for name, p in src.named_parameters():
                    if "lora_" in name:
                        p.normal_(0, 0.3)
            out.append(str(src.save_adapter(root / f"source{m}")))
        _EXAMPLE_ADAPTERS[key] = out
    return _EXAMPLE_ADAPTERS[key]
