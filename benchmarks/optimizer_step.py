"""Milliseconds per AdamW step, fused kernel against the per-tensor implementation, same run.

    OMP_NUM_THREADS=1 python benchmarks/optimizer_step.py [--steps 20] [--rounds 2]

Parameter shapes of two of our models (random values and gradients): SASRec on ML-1M (3,707 x 64
item table, 2 blocks, hidden 64) and a C2DSR-sized set on afk (three 28,096 x 128 tables, 8.7M
parameters). Rounds alternate the two implementations; also prints the largest weight difference
after 50 identical steps.
"""

from __future__ import annotations

import argparse
import time

import torch

SHAPES = {
    "sasrec-ml1m": [(3707, 64), (201, 64)] + [(64, 64)] * 8 + [(64,)] * 12 + [(256, 64), (64, 256)] * 2,
    "c2dsr-afk": [(28096, 128)] * 3 + [(128, 128)] * 20 + [(128,)] * 30,
}


def ms_per_step(shapes: list[tuple[int, ...]], fused: bool, steps: int) -> float:
    params = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(params, lr=1e-3, fused=fused or None)
    for _ in range(3):  # warm-up (state allocation)
        opt.step()
    t = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t) / steps * 1000


def max_difference(steps: int = 50) -> float:
    gen = torch.Generator().manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(100, 64, generator=gen)) for _ in range(2)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    oa, ob = torch.optim.AdamW(a, lr=1e-2), torch.optim.AdamW(b, lr=1e-2, fused=True)
    for _ in range(steps):
        for p, q in zip(a, b, strict=True):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        oa.step()
        ob.step()
    return max(float((p - q).detach().abs().max()) for p, q in zip(a, b, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for name, shapes in SHAPES.items():
        times: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for fused in ((False, True) if r % 2 == 0 else (True, False)):
                times[fused].append(ms_per_step(shapes, fused, args.steps))
        per_tensor, fused_ms = min(times[False]), min(times[True])
        print(f"{name}: per-tensor {per_tensor:.2f} ms/step, fused {fused_ms:.2f} ms/step "
              f"({per_tensor / fused_ms:.1f}x; best of {args.rounds} rounds)")
    print(f"largest weight difference after 50 identical steps: {max_difference():.1e}")


if __name__ == "__main__":
    main()
