"""``mosaicrec molar-items EXPERIMENT.yaml``: compute and cache a Molar experiment's frozen item embeddings.

The same table is computed on first use by training; running it as its own (queued, resumable by
cache) job keeps that cost out of the first epoch's time. Prints the cache file and the time.
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "compute and cache the frozen item embeddings of a Molar experiment (item_encoder.mode: frozen)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="experiment or benchmark YAML with model.name: molar")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.item_encoder.layers=8")
    p.add_argument("--work-dir", default="work", help="cache of prepared data")


def run(args: argparse.Namespace) -> int:
    import time

    from mosaicrec.config import load_experiment
    from mosaicrec.data.schema import PreparedData
    from mosaicrec.training.run import build_model, resolve_data

    cfg = load_experiment(args.experiment, [*args.overrides, "model.align.alpha=0"])
    if cfg.model["name"] != "molar":
        raise ValueError(f"{args.experiment}: model.name is {cfg.model['name']!r}, not 'molar'")
    model: Any = build_model(cfg, PreparedData.load(resolve_data(cfg.data, args.work_dir)), args.work_dir)
    t0 = time.perf_counter()
    path = model.ensure_item_table()
    print(f"item embeddings [{model.ctx.n_items + 1}, {model.item_mean.shape[0]}]: {path} "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0
