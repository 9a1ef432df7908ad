"""Move the committed LLM augmentation cache in and out of a benchmark's prepared folder.

The cache (``augment/<name>.parquet``: item_idx, content_hash, prompt_hash, model, text, token
counts) lives beside the prepared data, which is rebuilt per machine under ``work/``. The
finished part is kept in the repository as ``benchmarks/cache/<dataset>-<name>.parquet`` so
that benchmarks reuse it instead of regenerating it (hours with SmolLM2 on 2 cores):

    python benchmarks/cache/sync_augment.py restore benchmarks/afk_llm_emf.yaml   # repo -> work
    python benchmarks/cache/sync_augment.py save benchmarks/afk_llm_emf.yaml      # work -> repo

``restore`` merges (rows already in the prepared folder win); ``save`` writes zstd parquet
atomically. Rows are matched by (item_idx, content_hash, prompt_hash, model); the result keeps
one row per item, and ``--model LABEL`` keeps only one engine's rows. The feature store reads
every row of the file whatever its label, so when the engine changes restore with ``--model``
(or delete the prepared folder's old cache first): ``--model bench`` = the afk benchmark's label
``augment_chunk.BENCH_LABEL`` (SmolLM2 in bfloat16 from session 5 on).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from mosaicrec.config import load_experiment
from mosaicrec.training.run import resolve_data
from mosaicrec.utils import atomic_path

KEY = ["item_idx", "content_hash", "prompt_hash", "model"]


def merge(first: Path, second: Path, out: Path, model: str | None = None) -> int:
    """Merge two caches into ``out`` with at most one row per item (``first`` wins).

    ``model``: keep only rows of this model label (the engine's ``model_id``), so a file never
    mixes engines. Rows dropped for another label or because the item already has a row are
    counted and printed, never dropped silently.
    """
    frames = [pl.read_parquet(p) for p in (first, second) if p.exists()]
    if not frames:
        raise SystemExit(f"{first} and {second}: no cache to merge")
    df = pl.concat(frames, how="diagonal_relaxed").unique(subset=KEY, keep="first", maintain_order=True)
    if model is not None:
        other = df.filter(pl.col("model") != model)
        if len(other):
            print(f"merge -> {out.name}: left out {len(other)} rows of other model labels "
                  f"{sorted(set(other['model'].to_list()))}")
        df = df.filter(pl.col("model") == model)
    unique = df.unique(subset=["item_idx"], keep="first", maintain_order=True)
    if len(unique) < len(df):
        print(f"merge -> {out.name}: {len(df) - len(unique)} items had a second row (other label, prompt or "
              f"content); kept the row of {first.name}")
    df = unique
    with atomic_path(out) as tmp:
        df.write_parquet(tmp, compression="zstd", compression_level=19)
        tmp.chmod(0o644)
    return len(df)


def main() -> None:
    ap = argparse.ArgumentParser(description="restore/save the committed augmentation cache")
    ap.add_argument("action", choices=["restore", "save"])
    ap.add_argument("experiment", help="benchmark YAML whose data section names the prepared dataset")
    ap.add_argument("--name", default="llm_emf", help="augmentation cache name")
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--model", default=None,
                    help="keep only rows of this label: 'bench' (the afk benchmark's), an engine name "
                         "(llama_server, llama_cpp, transformers = float32) or a literal label; "
                         "default: all labels, one row per item")
    a = ap.parse_args()
    from augment_chunk import BENCH_LABEL, LABELS  # same folder (the script directory is on sys.path)

    model = {**LABELS, "bench": BENCH_LABEL}.get(a.model, a.model) if a.model else None
    cfg = load_experiment(a.experiment)
    root = resolve_data(cfg.data, Path(a.work_dir))
    local = root / "augment" / f"{a.name}.parquet"
    repo = Path(__file__).resolve().parent / f"{cfg.data.name or root.name}-{a.name}.parquet"
    if a.action == "restore":
        n = merge(local, repo, local, model=model)
        print(f"{local}: {n} cached items")
    else:
        n = merge(local, repo, repo, model=model)
        print(f"{repo}: {n} cached items")


if __name__ == "__main__":
    main()
