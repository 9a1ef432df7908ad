"""Profile training steps of the cdsr models (and SASRec) on real afk batches, one thread.

Prints, per model: seconds per step without the profiler, the number of operator calls per
step, and the operators with the largest self CPU time (forward + backward + optimiser).

    /work/bin/heavy python benchmarks/cdsr_profile.py --steps 10 --models afk_sasrec afk_haf_vt
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--models", nargs="+", default=["afk_sasrec", "afk_haf_vt", "afk_c2dsr", "afk_llm_emf-no_llm"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sort", default="self_cpu_time_total")
    a = ap.parse_args()
    torch.manual_seed(0)
    cfgs = {n: load_experiment(BENCH / f"{n}.yaml") for n in a.models}
    first = next(iter(cfgs.values()))
    data = PreparedData.load(resolve_data(first.data, Path(a.work_dir)))
    ds = WindowDataset(build_windows(data, first.train.max_len))
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, collate_fn=ds.collate)
    batches = [b for _, b in zip(range(a.steps + 2), loader, strict=False)]
    for n, c in cfgs.items():
        model = build_model(c, data, a.work_dir).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(batch, model=model, opt=opt) -> None:
            opt.zero_grad()
            model.loss(batch).backward()
            opt.step()

        step(batches[0])  # warm-up
        t0 = time.perf_counter()
        for b in batches[1:]:
            step(b)
        plain = (time.perf_counter() - t0) / (len(batches) - 1)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for b in batches[1:]:
                step(b)
        ev = prof.key_averages()
        calls = sum(e.count for e in ev) / (len(batches) - 1)
        print(f"\n=== {n}: {plain:.4f} s/step without profiler; {calls:.0f} operator calls/step")
        print(ev.table(sort_by=a.sort, row_limit=a.top))


if __name__ == "__main__":
    main()
