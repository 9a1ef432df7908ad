"""``mosaicrec serve RUN_DIR``: the HTTP recommendation service for a trained run."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

HELP = "serve a trained run over HTTP (recommendations, new items, web page)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished `mosaicrec train` run directory")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("MOSAICREC_API_KEY"),
                   help="require this X-API-Key header (default: env MOSAICREC_API_KEY; none = open)")
    p.add_argument("--max-batch", type=int, default=64, help="requests per forward pass")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a micro-batch waits to fill")
    p.add_argument("--no-batching", action="store_true", help="one forward pass per request")
    p.add_argument("--batch-policy", choices=["fill", "recent", "pipeline"], default=None,
                   help="how a micro-batch is formed (default: ServeConfig's; see docs/serving.md)")
    p.add_argument("--switch-interval-ms", type=float, default=None,
                   help="the server's GIL switch interval (sys.setswitchinterval; default: Python's 5 ms)")
    p.add_argument("--index", choices=["auto", "flat", "hnsw", "ivf"], default="auto",
                   help="auto: exact up to --exact-max-items, HNSW above")
    p.add_argument("--exact-max-items", type=int, default=50_000)
    p.add_argument("--padding", choices=["auto", "max_len", "longest"], default="auto",
                   help="pad histories to max_len (as the evaluator), to the batch's longest, or auto "
                        "(longest when a start-up check shows the model's output is unchanged)")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build(args: argparse.Namespace) -> tuple[Any, Any]:
    """(service, app) for the arguments; raises with a message naming the file on a bad run dir."""
    from mosaicrec.serving.app import create_app
    from mosaicrec.serving.index import IndexConfig
    from mosaicrec.serving.service import ServeConfig, Service

    cfg = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, batching=not args.no_batching,
                      max_body_bytes=args.max_body_bytes, torch_threads=args.threads, padding=args.padding,
                      index=IndexConfig(kind=args.index, exact_max_items=args.exact_max_items),
                      switch_interval_ms=args.switch_interval_ms,
                      **({"batch_policy": args.batch_policy} if args.batch_policy else {}))
    service = Service.from_run(args.run_dir, cfg)
    return service, create_app(service, api_key=args.api_key or None)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    service, app = build(args)  # a bad run dir fails here, before binding the port
    info = service.info()
    print(f"serving {info['model']} on {info['dataset']} ({info['n_items']} items, index {info['index']}) "
          f"at http://{args.host}:{args.port}/" + (" (API key required)" if args.api_key else ""),
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                loop="auto", http="auto", access_log=False)
    return 0
