"""n frozen LoRA adapters run side by side over ONE shared base model, and the layer integrators.

The n domain streams travel stacked in the batch dimension (``[n*B, ...]``, stream m = rows
``m*B .. (m+1)*B-1``). Each adapted ``nn.Linear`` is wrapped by :class:`MultiLoRALinear`, which
keeps a reference to the original module (the base weight is the same tensor, never copied),
applies it once to the whole ``[n*B, ..., in]`` input and adds every stream's low-rank update
with two batched matmuls: ``y_m = W x_m + s_m * B_m A_m x_m``. A :class:`StreamState` shared by
the wrappers and the layer hooks switches the adapters off (plain base model, e.g. the frozen
item tower).

Integrator (one per transformer layer, on the layer's output hidden states h_1..h_n, each
``[B, T, D]``): ``S = reshape(W [h_1; ...; h_n] + b, [n, n])`` per token (per-domain scaling
factors, unconstrained, so they may be negative), and the refined stream m is
``h'_m = sum_k S[m, k] h_k``, passed to the next layer. ``W`` starts at 0 and ``b`` at the
identity (streams independent: an output ensemble of the source models) or at ``1/n``
everywhere (static average). With ``b`` rows all equal to ``e_j`` and ``W = 0`` every stream
receives stream j's output, so stream j computes exactly source model j.

Variants (options of :class:`Integrator`, measured in docs/xcross.md):

* ``input``: what the projection reads. ``raw`` = the concatenated hidden states as they are
  (BERT-like models have a few large-magnitude dimensions, so one optimiser step on ``W`` can
  move ``S`` a lot); ``layernorm`` = each stream layer-normalised over D (no affine
  parameters) before the concatenation; ``unit`` = ``layernorm`` then divided by ``sqrt(n*D)``
  so the concatenation has L2 norm 1 per token (an Adam step of size lr on every weight moves
  an entry of ``S`` by at most ``lr * sqrt(n*D)``).
* ``form``: ``bias`` = the initial ``S0`` lives in the trainable bias (``S = W x + b``,
  ``b = S0`` at the start); ``residual`` = ``S = S0 + W x + b`` with ``S0`` a fixed buffer and
  ``W``, ``b`` zero at the start. Both start at exactly ``S0``; the difference is what weight
  decay pulls towards: 0 for ``bias`` (which would switch the streams off), ``S0`` (e.g. the
  static adapter average) for ``residual``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

INTEGRATOR_INPUTS = ("raw", "layernorm", "unit")
INTEGRATOR_FORMS = ("bias", "residual")
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<mod>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


@dataclass
class StreamState:
    n: int = 0  # number of stacked streams in the current forward; 0 = adapters off


@dataclass
class PeftAdapter:
    path: Path
    scale: float
    r: int
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]  # module path -> (A [r, in], B [out, r])


def read_peft_adapter(folder: str | Path) -> PeftAdapter:
    """Read a standard peft LoRA adapter folder (``adapter_config.json`` + weights)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path = folder / "adapter_config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path}: not found (not a peft adapter folder)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("peft_type") != "LORA":
        raise ValueError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r}, only LORA adapters are supported")
    if cfg.get("use_dora"):
        raise ValueError(f"{cfg_path}: DoRA adapters are not supported")
    r = int(cfg["r"])
    alpha = float(cfg.get("lora_alpha", r))
    scale = alpha / (r ** 0.5) if cfg.get("use_rslora") else alpha / r
    wpath = folder / "adapter_model.safetensors"
    if not wpath.exists():
        raise FileNotFoundError(f"{wpath}: not found")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in load_file(str(wpath)).items():
        m = _KEY.match(key)
        if m is None:
            raise ValueError(f"{wpath}: unexpected tensor {key!r} (only lora_A / lora_B weights are supported)")
        parts.setdefault(m["mod"], {})[m["ab"]] = t.float()
    bad = [k for k, v in parts.items() if set(v) != {"A", "B"}]
    if bad:
        raise ValueError(f"{wpath}: modules {bad} lack lora_A or lora_B")
    return PeftAdapter(folder, scale, r, {k: (v["A"], v["B"]) for k, v in parts.items()})


class MultiLoRALinear(nn.Module):
    """``base`` (shared, frozen) plus n frozen low-rank updates applied per stream."""

    lora_A: torch.Tensor  # [n, in, r]
    lora_B: torch.Tensor  # [n, r, out] (scales folded in)

    def __init__(self, base: nn.Linear, As: list[torch.Tensor], Bs: list[torch.Tensor], scales: list[float],
                 state: StreamState) -> None:
        super().__init__()
        self.base = base  # the original module: its weight is shared, not copied
        r = max(a.shape[0] for a in As)
        n, fin, fout = len(As), base.in_features, base.out_features
        A = torch.zeros(n, fin, r)  # [n, in, r] zero-padded to the largest rank
        B = torch.zeros(n, r, fout)  # [n, r, out]
        for m, (a, b) in enumerate(zip(As, Bs, strict=True)):
            if a.shape[1] != fin or b.shape[0] != fout:
                raise ValueError(f"adapter {m}: LoRA shapes A{tuple(a.shape)} B{tuple(b.shape)} do not fit "
                                 f"a Linear({fin}, {fout})")
            A[m, :, : a.shape[0]] = a.T
            B[m, : a.shape[0]] = b.T
        self.register_buffer("lora_A", A)
        self.register_buffer("lora_B", B * torch.tensor(scales).view(n, 1, 1))  # scale folded in
        self.state = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # [n*B, ..., out]
        n = self.state.n
        if n == 0:
            return y
        xs = x.reshape(n, -1, x.shape[-1])  # [n, M, in]
        delta = torch.bmm(torch.bmm(xs, self.lora_A), self.lora_B)  # [n, M, out]
        return y + delta.reshape(y.shape).to(y.dtype)


class Integrator(nn.Module):
    """Per-token mixing of the n streams: ``h'_m = sum_k S[m, k] h_k``, ``S`` from the concatenation."""

    S0: torch.Tensor  # [n*n] fixed offset of form 'residual' (zeros for 'bias')

    def __init__(self, n: int, dim: int, init: str = "identity", input: str = "raw", form: str = "bias") -> None:
        super().__init__()
        if input not in INTEGRATOR_INPUTS:
            raise ValueError(f"integrator input {input!r}: use one of {INTEGRATOR_INPUTS}")
        if form not in INTEGRATOR_FORMS:
            raise ValueError(f"integrator form {form!r}: use one of {INTEGRATOR_FORMS}")
        self.n, self.dim, self.input, self.form = n, dim, input, form
        self.proj = nn.Linear(n * dim, n * n)
        nn.init.zeros_(self.proj.weight)
        s0 = self.initial_bias(n, init)  # [n*n]
        with torch.no_grad():
            self.proj.bias.copy_(s0 if form == "bias" else torch.zeros_like(s0))
        # not persistent: S0 follows from the config (older checkpoints lack it)
        self.register_buffer("S0", s0 if form == "residual" else torch.zeros_like(s0), persistent=False)

    @staticmethod
    def initial_bias(n: int, init: str) -> torch.Tensor:
        if init == "identity":
            return torch.eye(n).flatten()
        if init == "average":
            return torch.full((n * n,), 1.0 / n)
        m = re.fullmatch(r"select:(\d+)", init)
        if m and int(m[1]) < n:
            S = torch.zeros(n, n)
            S[:, int(m[1])] = 1.0
            return S.flatten()
        raise ValueError(f"integrator init {init!r}: use identity, average or select:K (K < {n})")

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` [n, B, T, D] -> the projection's input [B, T, n*D]."""
        n, B, T, D = h.shape
        if self.input != "raw":
            h = F.layer_norm(h, (D,))  # [n, B, T, D] per stream, no affine parameters
        cat = h.permute(1, 2, 0, 3).reshape(B, T, n * D)  # [B, T, n*D]
        return cat / (n * D) ** 0.5 if self.input == "unit" else cat

    def scales(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` [n, B, T, D] -> S [B, T, n, n]."""
        n, B, T, _ = h.shape
        return (self.proj(self.features(h)) + self.S0).view(B, T, n, n)  # [B, T, n, n]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        S = self.scales(h)  # [B, T, n, n]
        return torch.einsum("btmk,kbtd->mbtd", S, h)  # [n, B, T, D]
