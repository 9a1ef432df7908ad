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

Two datasets that share items (afk's titles were joined by ASIN from food-kitchen) can share the
generations: ``transfer`` copies the rows of one benchmark's committed cache into another's,
matching items by raw id and keeping a row only where the target item's content hash (title,
text, domain) equals the one it was generated from, so the prompt was the very same:

    python benchmarks/cache/sync_augment.py transfer benchmarks/afk_llm_emf.yaml --to benchmarks/food_kitchen_llm_emf.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import polars as pl

from mosaicrec.config import load_experiment
from mosaicrec.training.run import resolve_data
from mosaicrec.utils import atomic_path

KEY = ["item_idx", "content_hash", "prompt_hash", "model"]
HERE = Path(__file__).resolve().parent


def committed_cache(cfg: Any, root: Path, name: str) -> Path:
    """The committed cache of a benchmark's dataset: ``benchmarks/cache/<dataset>-<name>.parquet``."""
    return HERE / f"{cfg.data.name or root.name}-{name}.parquet"


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


def transfer_rows(df: pl.DataFrame, src_raw: list[str], dst_raw: list[str],
                  dst_hashes: list[str]) -> tuple[pl.DataFrame, dict[str, int]]:
    """Re-index cache rows of a source dataset onto a target dataset's items.

    ``src_raw[i-1]`` / ``dst_raw[j-1]``: raw id of item i / j; ``dst_hashes[j-1]``: the target
    item's content hash. A row moves to item j when its item's raw id is j's and its content hash
    is j's (same title, text and domain, so the same prompt); the others are counted by reason.
    """
    index = {raw: j for j, raw in enumerate(dst_raw, start=1)}
    keep, targets = [], []
    counts = {"rows": len(df), "moved": 0, "no_such_item": 0, "other_content": 0}
    for k, (item, chash) in enumerate(zip(df["item_idx"].to_list(), df["content_hash"].to_list(), strict=True)):
        if not 1 <= item <= len(src_raw):
            raise SystemExit(f"cache row {k}: item_idx {item} outside the source's 1..{len(src_raw)}")
        j = index.get(src_raw[item - 1])
        if j is None:
            counts["no_such_item"] += 1
        elif dst_hashes[j - 1] != chash:
            counts["other_content"] += 1
        else:
            keep.append(k)
            targets.append(j)
    counts["moved"] = len(keep)
    out = df[keep].with_columns(pl.Series("item_idx", targets, dtype=df.schema["item_idx"]))
    return out, counts


def transfer(src_yaml: str, dst_yaml: str, work_dir: Path, name: str, model: str | None) -> None:
    from mosaicrec.data.schema import PreparedData
    from mosaicrec.features.augment.cache import item_content_hashes

    src_cfg, dst_cfg = load_experiment(src_yaml), load_experiment(dst_yaml)
    src_root, dst_root = resolve_data(src_cfg.data, work_dir), resolve_data(dst_cfg.data, work_dir)
    src_file, dst_file = committed_cache(src_cfg, src_root, name), committed_cache(dst_cfg, dst_root, name)
    if not src_file.exists():
        raise SystemExit(f"{src_file}: no committed cache to transfer from")
    df = pl.read_parquet(src_file)
    if model is not None:
        df = df.filter(pl.col("model") == model)
    src, dst = PreparedData.load(src_root), PreparedData.load(dst_root)
    moved, counts = transfer_rows(df, src.items["raw_id"].to_list(), dst.items["raw_id"].to_list(),
                                  item_content_hashes(dst))
    print(f"{src_file.name} -> {dst_file.name}: {counts['moved']} of {counts['rows']} rows moved "
          f"({counts['no_such_item']} items not in {dst_cfg.data.name}, {counts['other_content']} with other content)")
    tmp = dst_file.with_name(dst_file.name + ".transfer")
    moved.write_parquet(tmp)
    try:
        n = merge(dst_file, tmp, dst_file, model=model)  # rows the target already has win
    finally:
        tmp.unlink()
    print(f"{dst_file}: {n} cached items")


def main() -> None:
    ap = argparse.ArgumentParser(description="restore/save the committed augmentation cache")
    ap.add_argument("action", choices=["restore", "save", "transfer"])
    ap.add_argument("experiment", help="benchmark YAML whose data section names the prepared dataset")
    ap.add_argument("--name", default="llm_emf", help="augmentation cache name")
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--to", default=None, help="transfer: the target benchmark YAML")
    ap.add_argument("--model", default=None,
                    help="keep only rows of this label: 'bench' (the afk benchmark's), an engine name "
                         "(llama_server, llama_cpp, transformers = float32) or a literal label; "
                         "default: all labels, one row per item")
    a = ap.parse_args()
    from augment_chunk import BENCH_LABEL, LABELS  # same folder (the script directory is on sys.path)

    model = {**LABELS, "bench": BENCH_LABEL}.get(a.model, a.model) if a.model else None
    if a.action == "transfer":
        if not a.to:
            raise SystemExit("transfer needs --to TARGET_YAML")
        return transfer(a.experiment, a.to, Path(a.work_dir), a.name, model)
    cfg = load_experiment(a.experiment)
    root = resolve_data(cfg.data, Path(a.work_dir))
    local = root / "augment" / f"{a.name}.parquet"
    repo = committed_cache(cfg, root, a.name)
    if a.action == "restore":
        n = merge(local, repo, local, model=model)
        print(f"{local}: {n} cached items")
    else:
        n = merge(local, repo, repo, model=model)
        print(f"{repo}: {n} cached items")


if __name__ == "__main__":
    main()
