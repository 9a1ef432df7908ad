"""Where an epoch's time goes: training steps (as the engine batches them) vs one validation pass.

For each benchmark YAML: the engine's training windows and loader (batch size, shuffling),
``--steps`` timed optimiser steps (AdamW at the YAML's lr, after one warm-up step), the number
of steps per epoch, and one validation pass with the engine's validation Evaluator (split
``valid``, full ranking, ``train.val_users`` queries). ``--profile`` adds the top functions of
cProfile for each part.

    /work/bin/heavy python benchmarks/cdsr_epoch_probe.py food_kitchen_sasrec --steps 30
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import time
from pathlib import Path

import torch

from mosaicrec.config import load_experiment
from mosaicrec.data.schema import PreparedData
from mosaicrec.evaluation.ranking import Evaluator
from mosaicrec.training.data import WindowDataset, build_windows
from mosaicrec.training.run import build_model, resolve_data

BENCH = Path(__file__).resolve().parent


def _top(prof: cProfile.Profile, n: int) -> str:
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(n)
    return out.getvalue()


def probe(name: str, steps: int, work_dir: str, profile: bool, bench_dir: Path = BENCH) -> dict[str, float | int | str]:
    cfg = load_experiment(bench_dir / f"{name}.yaml")
    torch.manual_seed(cfg.train.seed)
    t0 = time.perf_counter()
    data = PreparedData.load(resolve_data(cfg.data, Path(work_dir)))
    model = build_model(cfg, data, work_dir).train()
    ds = WindowDataset(build_windows(data, cfg.train.max_len))
    setup = time.perf_counter() - t0
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=True, collate_fn=ds.collate)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    it = iter(loader)
    prof = cProfile.Profile() if profile else None
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        if prof is not None and i:
            prof.enable()
        batch = next(it)
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
        if prof is not None and i:
            prof.disable()
        if i:
            times.append(time.perf_counter() - t0)
    if prof is not None:
        print(f"=== {name}: training steps\n{_top(prof, 25)}")
    valid = Evaluator(data, cfg.eval.model_copy(update={"mode": "full"}), "valid", cfg.train.max_len,
                      max_queries=cfg.train.val_users)
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    result = valid.evaluate(model.eval(), device=torch.device("cpu"))
    if prof is not None:
        prof.disable()
        print(f"=== {name}: one validation pass\n{_top(prof, 25)}")
    val_s = time.perf_counter() - t0
    s_step = sum(times) / len(times)
    n_steps = len(loader)
    return {"s_per_step": s_step, "steps_per_epoch": n_steps, "train_s_per_epoch": s_step * n_steps,
            "val_s": val_s, "val_queries": result.n_queries,
            "windows": len(ds), "setup_s": setup, "batch_size": cfg.train.batch_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+", help="benchmark YAML names (benchmarks/NAME.yaml)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--bench-dir", default=str(BENCH), help="folder of the benchmark YAMLs (their data paths are relative to it)")
    ap.add_argument("--json")
    a = ap.parse_args()
    out: dict[str, object] = {n: probe(n, a.steps, a.work_dir, a.profile, Path(a.bench_dir)) for n in a.names}
    out["_"] = {"threads": torch.get_num_threads(), "load_average_at_end": list(os.getloadavg()),
                "steps_timed": a.steps}
    print(json.dumps(out, indent=2))
    if a.json:
        from mosaicrec.utils import write_json

        write_json(a.json, out)


if __name__ == "__main__":
    main()
