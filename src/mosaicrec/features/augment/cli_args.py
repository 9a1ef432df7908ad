"""Command-line flags shared by ``augment`` and ``caption`` (backend, model, HTTP settings)."""

from __future__ import annotations

import argparse
from typing import Any

from mosaicrec.config import ConfigError, load_yaml


def add_generation_arguments(p: argparse.ArgumentParser, default_template: str) -> None:
    p.add_argument("prepared_dir", help="prepared dataset folder (items.parquet, meta.json)")
    p.add_argument("--config", default=None, help="YAML with the job's settings (flags override it)")
    p.add_argument("--template", default=None, help=f"prompt template name or YAML path (default {default_template})")
    p.add_argument("--name", default=None, help="cache name: <prepared_dir>/augment/<name>.parquet")
    p.add_argument("--backend", default=None, help="transformers | llama_cpp | openai | vision2seq")
    p.add_argument("--model", default=None, help="model name/path (local) or served model name (openai)")
    p.add_argument("--gguf-file", default=None, help="GGUF file inside the model folder")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="transformers: dtype")
    p.add_argument("--batch-size", type=int, default=None, help="prompts per batch (and per cache flush)")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--base-url", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key-env", default=None, help="environment variable holding the API key")
    p.add_argument("--concurrency", type=int, default=None, help="parallel HTTP requests")
    p.add_argument("--max-retries", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None, help="seconds per HTTP request")
    p.add_argument("--limit", type=int, default=None, help="at most this many unfinished items")
    p.add_argument("--items", default=None, help="comma-separated item ids")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


LLM_FLAGS = ("backend", "model", "gguf_file", "device", "dtype", "batch_size", "max_new_tokens", "temperature",
             "base_url", "api_key_env", "concurrency", "max_retries", "timeout")


def merged_config(args: argparse.Namespace, cls: Any) -> Any:
    """The job config: YAML file (if any), then command-line flags on top."""
    from pydantic import ValidationError

    raw: dict[str, Any] = load_yaml(args.config) if args.config else {}
    llm = dict(raw.get("llm") or {})
    llm.update({k: getattr(args, k) for k in LLM_FLAGS if getattr(args, k) is not None})
    if llm:
        base = cls.model_fields["llm"].default_factory().model_dump(exclude_unset=True)
        raw["llm"] = {**base, **llm}
    for key in ("template", "name", "limit"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    if args.items:
        try:
            raw["items"] = [int(x) for x in args.items.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--items {args.items!r}: expected comma-separated integers") from None
    raw["progress"] = not args.no_progress
    try:
        return cls(**raw)
    except ValidationError as e:
        raise ConfigError(f"{args.config or 'command line'}: {e}") from None
