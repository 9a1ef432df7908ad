"""Training cost per epoch of the CF models, measured in ONE process, interleaved.

    python benchmarks/cf_epoch_cost.py BENCH [BENCH ...] [--epochs 2] [--steps N] [--coo]
        [--eval] [--work-dir work] [--json PATH]

Each BENCH is a benchmarks/<name>.yaml. Models are built on the same prepared data and trained
(BPR steps only: no validation) for ``--epochs`` epochs each, the models taking turns epoch by
epoch so that load from other processes hits them alike. Reports the mean seconds per epoch and
the ratio to the first BENCH. ``--steps N`` times only the first N steps of each epoch (after
one untimed warm-up step) and extrapolates to the full epoch (``steps_per_epoch`` is stored).
``--coo`` also times every model with the sparse products of session 1 (torch COO
``sparse.mm`` and its autograd backward instead of :class:`SparseOp`), as ``<BENCH>@coo``.
``--eval`` times one validation evaluation (``train.val_users`` users) and one full test
evaluation per model after training.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@contextmanager
def coo_products(enabled: bool) -> Any:
    """Within the block, SparseOp products use torch COO sparse.mm (the pre-SparseOp path)."""
    import torch

    from mosaicrec.models.cf.graph import SparseOp

    orig = SparseOp.__matmul__
    if enabled:
        SparseOp.__matmul__ = lambda self, x: torch.sparse.mm(self.coo, x)  # type: ignore[method-assign]
    try:
        yield
    finally:
        SparseOp.__matmul__ = orig  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    import json

    import torch
    from torch.utils.data import DataLoader

    from mosaicrec.commands.cold import merge_json
    from mosaicrec.config import load_experiment
    from mosaicrec.data.schema import PreparedData
    from mosaicrec.evaluation.ranking import Evaluator
    from mosaicrec.training.run import build_model, resolve_data

    p = argparse.ArgumentParser()
    p.add_argument("benches", nargs="+")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, help="time this many steps per epoch and extrapolate")
    p.add_argument("--coo", action="store_true", help="also time the COO sparse.mm path (session 1)")
    p.add_argument("--eval", action="store_true", help="also time one validation and one test evaluation")
    p.add_argument("--work-dir", default="work")
    p.add_argument("--json", help="merge {'epoch_cost': ...} into this JSON")
    args = p.parse_args(argv)
    runs = []
    for name in args.benches:
        cfg = load_experiment(HERE / f"{name}.yaml")
        data = PreparedData.load(resolve_data(cfg.data, args.work_dir))
        for coo in ([False, True] if args.coo else [False]):
            torch.manual_seed(0)
            model = build_model(cfg, data, args.work_dir)
            ds = model.train_dataset()
            loader = DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=True, collate_fn=ds.collate)
            opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
            runs.append({"name": name + ("@coo" if coo else ""), "coo": coo, "model": model, "loader": loader,
                         "opt": opt, "seconds": [], "cfg": cfg, "data": data})
    for epoch in range(args.epochs):
        for r in runs:
            model = r["model"].train()
            n_steps = len(r["loader"])
            with coo_products(r["coo"]):
                model.on_epoch_start(epoch)
                t0, timed = time.perf_counter(), 0
                for step, batch in enumerate(r["loader"]):
                    if args.steps is not None and step == 0:  # warm-up, untimed
                        r["opt"].zero_grad()
                        model.loss(batch).backward()
                        r["opt"].step()
                        t0 = time.perf_counter()
                        continue
                    r["opt"].zero_grad()
                    model.loss(batch).backward()
                    r["opt"].step()
                    timed += 1
                    if args.steps is not None and timed >= args.steps:
                        break
                dt = time.perf_counter() - t0
            r["seconds"].append(dt * n_steps / timed if args.steps is not None else dt)
            print(f"{r['name']} epoch {epoch}: {r['seconds'][-1]:.1f} s/epoch", flush=True)
    out: dict[str, Any] = {}
    base = sum(runs[0]["seconds"]) / args.epochs
    for r in runs:
        sec = sum(r["seconds"]) / args.epochs
        out[r["name"]] = {"epoch_seconds": sec, "per_epoch": r["seconds"], "ratio_to_" + runs[0]["name"]: sec / base,
                          "steps_per_epoch": len(r["loader"]), "timed_steps": args.steps,
                          "parameters": sum(p.numel() for p in r["model"].parameters())}
        if args.eval and not r["coo"]:
            cfg, data, model = r["cfg"], r["data"], r["model"]
            for split, n in (("valid", cfg.train.val_users), ("test", None)):
                ev = Evaluator(data, cfg.eval.model_copy(update={"mode": "full"}), split, cfg.train.max_len,
                               max_queries=n)
                t0 = time.perf_counter()
                ev.evaluate(model, device="cpu")
                out[r["name"]][f"{split}_eval_seconds"] = time.perf_counter() - t0
                model.train()
    out["command"] = " ".join(["python", *sys.argv])
    print(json.dumps(out, indent=2))
    if args.json:
        merge_json(args.json, "epoch_cost", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
