"""Seconds per training step of the cdsr models against SASRec on afk, in ONE process.

Every model trains on the same real batches (the engine's training windows of afk), steps
interleaved model by model, so machine load affects them alike. Seconds per epoch =
seconds per step x steps per epoch (the same windows for every model).

    HEAVY_ALL=1 OMP_NUM_THREADS=1 /work/bin/heavy python benchmarks/cdsr_cost.py --steps 40 --batch-size 32 \
        --models afk_sasrec afk_haf_vt afk_c2dsr afk_llm_emf-no_llm --json benchmarks/results/cdsr_cost_afk.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from mosaicrec.config import load_experiment
from mosaicrec.data.schema import PreparedData
from mosaicrec.training.data import WindowDataset, build_windows
from mosaicrec.training.run import build_model, resolve_data

BENCH = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["cost_ref_sasrec", "afk_haf_vt", "afk_c2dsr"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the first model's train.batch_size")
    ap.add_argument("--bench-dir", default=str(BENCH), help="folder of the benchmark YAMLs (their data paths are relative to it)")
    ap.add_argument("--json")
    ap.add_argument("--label", default="", help="recorded in the JSON (e.g. the commit measured)")
    ap.add_argument("--adam", choices=["engine", "fused", "per-tensor"], default="engine",
                    help="AdamW implementation: the engine's (train.fused_optimizer: fused by default since "
                         "session 4; per-tensor in code before it), or forced")
    ap.add_argument("--fused-adam", action="store_const", dest="adam", const="fused", help="= --adam fused")
    a = ap.parse_args()
    load0 = list(os.getloadavg())
    torch.manual_seed(0)
    cfgs = {n: load_experiment(Path(a.bench_dir) / f"{n}.yaml") for n in a.models}
    first = next(iter(cfgs.values()))
    data = PreparedData.load(resolve_data(first.data, Path(a.work_dir)))
    ds = WindowDataset(build_windows(data, first.train.max_len))
    bsz = a.batch_size or first.train.batch_size
    loader = torch.utils.data.DataLoader(ds, batch_size=bsz, shuffle=True, collate_fn=ds.collate)
    batches = [b for _, b in zip(range(a.steps + 1), loader, strict=False)]
    models, opts, times = {}, {}, {n: [] for n in cfgs}
    for n, c in cfgs.items():
        models[n] = build_model(c, data, a.work_dir).train()
        # the engine's optimiser (RecModule.configure_optimizers): AdamW at the YAML's lr
        fused = {"fused": True, "per-tensor": False}.get(a.adam, getattr(c.train, "fused_optimizer", False))
        opts[n] = torch.optim.AdamW(models[n].parameters(), lr=c.train.lr, weight_decay=c.train.weight_decay,
                                    fused=fused or None)
    for i, batch in enumerate(batches):
        for n, m in models.items():
            t0 = time.perf_counter()
            opts[n].zero_grad()
            m.loss(batch).backward()
            opts[n].step()
            if i > 0:  # step 0 is warm-up
                times[n].append(time.perf_counter() - t0)
    steps_per_epoch = -(-len(ds) // bsz)
    base = a.models[0]
    out: dict[str, dict[str, object]] = {
        n: {"s_per_step": sum(t) / len(t), "s_per_epoch": sum(t) / len(t) * steps_per_epoch,
            "ratio_to_" + base: sum(t) / sum(times[base]),
            "median_ratio_to_" + base: statistics.median(t) / statistics.median(times[base])}
        for n, t in times.items()}
    out["_"] = {"steps_timed": a.steps, "steps_per_epoch": steps_per_epoch,
                "batch_size": bsz, "threads": torch.get_num_threads(),
                "load_average_at_start": load0, "load_average_at_end": list(os.getloadavg()),
                "code": a.label, "optimizer": f"AdamW ({a.adam}: " + ("fused" if opts[base].defaults["fused"] else "per-tensor") + ")"}
    print(json.dumps(out, indent=2))
    if a.json:
        from mosaicrec.utils import write_json

        write_json(a.json, out)


if __name__ == "__main__":
    main()
