"""One resumable chunk of the afk LLM augmentation (SmolLM2-135M, template ``llm_emf``).

Runs in its own prepared folder (``--work-dir work-aug``) so that a benchmark reading the
features of ``work/`` never sees the cache change under it. Steps:

1. restore the committed cache ``benchmarks/cache/afk-llm_emf.parquet`` into the folder;
2. generate for the next unfinished items in order of decreasing training interaction count
   (items with a title or text only), for at most ``--minutes`` of wall time (checked between
   batches of ``--chunk`` items; every finished batch is flushed to the cache by
   ``mosaicrec augment``'s own writer);
3. merge the folder's cache back into the committed file (atomic zstd parquet).

    /work/bin/heavy python benchmarks/cache/augment_chunk.py --minutes 14

Killing it loses at most the batch in flight; run it again to continue.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mosaicrec.config import load_experiment
from mosaicrec.data.schema import PreparedData
from mosaicrec.features.augment.run import AugmentConfig, run_augment
from mosaicrec.training.run import resolve_data

HERE = Path(__file__).resolve().parent


def popularity_order(data: PreparedData) -> list[int]:
    """Item ids 1..N by decreasing number of training interactions (ties: smaller id first)."""
    from mosaicrec.data.schema import TRAIN

    counts = np.bincount(data.item[data.split == TRAIN], minlength=data.n_items + 1)[1:]  # [N]
    order = np.lexsort((np.arange(data.n_items), -counts))  # [N]
    return [int(i) + 1 for i in order]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default=str(HERE.parent / "afk_llm_emf.yaml"))
    ap.add_argument("--work-dir", default="work-aug")
    ap.add_argument("--minutes", type=float, default=14.0)
    ap.add_argument("--chunk", type=int, default=32, help="items per run_augment call (time is checked between)")
    ap.add_argument("--batch-size", type=int, default=8)
    a = ap.parse_args()
    from sync_augment import merge  # same folder (the script directory is on sys.path)

    cfg = load_experiment(a.experiment)
    root = resolve_data(cfg.data, Path(a.work_dir))
    local = root / "augment" / "llm_emf.parquet"
    repo = HERE / f"{cfg.data.name or root.name}-llm_emf.parquet"
    local.parent.mkdir(parents=True, exist_ok=True)
    if repo.exists():
        print(f"restored: {merge(local, repo, local)} cached items")
    data = PreparedData.load(root)
    order = popularity_order(data)
    t_end = time.monotonic() + 60 * a.minutes
    total = 0
    while time.monotonic() < t_end:
        job = AugmentConfig(items=order, limit=a.chunk, progress=False,
                            llm={"batch_size": a.batch_size})
        rep = run_augment(data, job)
        total += rep.n_generated
        print(rep.summary(), flush=True)
        if rep.n_generated == 0:
            break
    print(f"generated {total} items this chunk; repo cache: {merge(local, repo, repo)} items")


if __name__ == "__main__":
    main()
