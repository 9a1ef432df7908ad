"""The frozen-encoder interface and the helpers shared by the built-in encoders.

An encoder is a class registered in :data:`mosaicrec.registry.ENCODERS`. It is built from an
:class:`EncoderConfig` (constructors load nothing; the model is loaded on first use) and maps
a list of texts or a list of PIL images to a float32 array ``[n, dim]``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from mosaicrec.config import StrictModel


class EncoderConfig(StrictModel):
    """Options common to every frozen encoder."""

    model: str | None = Field(None, description="model name or local path; None = the encoder's default")
    revision: str | None = Field(None, description="hub revision (commit/tag) when loading by name")
    device: str = Field("cpu", description="torch device")
    batch_size: int = Field(64, ge=1)
    normalize: bool = Field(True, description="L2-normalise the output vectors")
    max_length: int | None = Field(None, ge=1, description="token limit for text inputs")
    pooling: Literal["mean", "last"] = Field("mean", description="token pooling of the `lm` encoder")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="bfloat16: run the forward pass under torch.autocast(bfloat16) (much faster on "
                            "CPUs with AVX512-BF16/AMX and on GPUs; see docs/features.md for the accuracy effect); "
                            "auto: bfloat16 for the sentence-transformers text encoders on a CPU with native "
                            "bfloat16 (AVX512-BF16 or AMX), float32 otherwise and for every other encoder")
    attention: Literal["auto", "model"] = Field(
        "auto", description="sentence-transformers encoders on the CPU: auto = plain matmul-softmax attention for "
                            "texts of at most 64 tokens and the model's sdpa kernel above (encoders/attention.py); "
                            "model = the model's own attention implementation")
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="sentence-transformers encoders: run batches of >= 2 texts through torch.compile "
                            "(inductor, needs a C++ compiler; falls back to eager with a warning). on/off force it; "
                            "auto = on only for jobs of at least encoders.compiled.AUTO_MIN_TEXTS texts, where the "
                            "one-off compilation pays back (docs/features.md). Texts encoded one at a time stay eager")
    max_batch_tokens: int | None = Field(
        1024, ge=1, description="sentence-transformers encoders: batches are formed from length-sorted texts with at most this "
                                "many padded tokens (and at most batch_size texts); None = batch_size only")


class Encoder:
    """Base class. Subclasses set ``modalities`` and implement ``_load`` and the encode methods."""

    modalities: ClassVar[tuple[Literal["text", "image"], ...]] = ("text",)
    default_model: ClassVar[str] = ""
    bfloat16_by_default: ClassVar[bool] = False  # precision "auto" -> bfloat16 on CPUs with native bfloat16

    def __init__(self, cfg: EncoderConfig | None = None, **kwargs: Any) -> None:
        cfg = cfg or EncoderConfig(**kwargs)
        if cfg.precision == "auto":  # resolved once: the manifest and the forward pass see the real precision
            bf16 = self.bfloat16_by_default and cfg.device == "cpu" and cpu_has_native_bfloat16()
            cfg = cfg.model_copy(update={"precision": "bfloat16" if bf16 else "float32"})
        self.cfg = cfg
        self._model: Any = None

    # ----------------------------------------------------------------- identity
    @property
    def model_name(self) -> str:
        return self.cfg.model or self.default_model

    def describe(self) -> dict[str, Any]:
        """Model identity recorded in the feature manifest."""
        out = {"model": self.model_name, "revision": self.cfg.revision or "local",
               "normalize": self.cfg.normalize, "max_length": self.cfg.max_length}
        if self.cfg.precision != "float32":  # float32 results keep their manifest identity
            out["precision"] = self.cfg.precision
        return out

    def autocast(self) -> Any:
        """The context the forward pass runs in: torch.autocast for ``precision`` bfloat16."""
        import contextlib

        import torch

        if self.cfg.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.cfg.device).type, dtype=torch.bfloat16)

    @property
    def dim(self) -> int:
        raise NotImplementedError

    # ----------------------------------------------------------------- encoding
    def load(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> Any:
        raise NotImplementedError

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        raise TypeError(f"encoder {type(self).__name__} has no text tower")

    def encode_images(self, images: list[Any]) -> np.ndarray:
        raise TypeError(f"encoder {type(self).__name__} has no image tower")

    def plan(self, n_texts: int) -> None:
        """Hint: about ``n_texts`` texts will be encoded by this encoder in the calls that follow
        (the embed stage says how many items a job holds; options such as ``compile`` = auto use it)."""
        self.planned_texts = max(getattr(self, "planned_texts", 0), n_texts)

    def supports(self, modality: str) -> bool:
        return modality in self.modalities


def cpu_has_native_bfloat16() -> bool:
    """True when this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX) as seen by oneDNN."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_linear_weights(model: Any) -> None:
    """Store the weights of every ``nn.Linear`` of ``model`` in bfloat16 (in place).

    Under ``torch.autocast(bfloat16)`` a linear layer runs in bfloat16 anyway, so the results are
    unchanged; stored in bfloat16, the weights are not cast again on every call (a fixed cost that
    dominates when texts are encoded one at a time). Layer norms, embeddings and pooling keep float32.
    """
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.to(torch.bfloat16)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)  # [n, 1]
    return x / np.maximum(norm, 1e-12)


def to_numpy(t: Any, normalize: bool) -> np.ndarray:
    arr = t.detach().float().cpu().numpy().astype(np.float32)  # [n, d]
    return l2_normalize(arr) if normalize else arr


def token_batches(lengths: list[int], batch_size: int, max_tokens: int | None) -> list[list[int]]:
    """Positions of ``lengths`` grouped into batches of similar length, longest first.

    Each batch holds at most ``batch_size`` items and, padded to its longest item, at most
    ``max_tokens`` tokens (a single longer item still forms a batch of one). Sorting first keeps
    the padding small: a batch of titles pads to the longest of similar titles, not to an outlier.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = lengths[cur[0]] if cur else lengths[i]  # sorted: the first item is the longest
        if cur and (len(cur) >= batch_size or (max_tokens is not None and (len(cur) + 1) * longest > max_tokens)):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches
