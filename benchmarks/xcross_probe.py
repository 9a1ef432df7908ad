"""Why does training X-Cross's integrators lower accuracy? A small diagnostic probe (issue 7).

Same setting as ``benchmarks/xcross_curve.py`` (its cached source adapters and base item
vectors are reused; run ``xcross_curve.py --methods sources`` first), one short training run
per variant on the first ``--train`` sequences of the target pool, recording:

* at step 0: the magnitude of every integrator's input (the concatenated activations: RMS,
  largest |value|, share of the squared norm in the 5 largest dimensions) and output;
* every step: the training batch loss and how far the scaling factors moved from their initial
  value (mean |S - S_init| over the batch's tokens, per layer averaged);
* every ``--every`` steps (and at step 0): the full-softmax loss on a FIXED subset of the
  training sequences (does optimisation work?) and loss / NDCG@10 / Recall@10 on a fixed set
  of validation queries (does it generalise?), ranked over all target items like the Evaluator
  (pessimistic ties, no seen-item masking).

Variants: ``NAME:key=value,...`` with keys ``input`` (raw|layernorm|unit), ``form``
(bias|residual), ``init``, ``lr``, ``wd`` (AdamW weight decay), ``loss`` (the training loss:
full|in_batch|sampled; the tracked losses are always the full softmax) and ``static`` (1 = only
the integrators' biases train: a token-independent n x n mixing per layer, a diagnostic). Writes a
JSON (atomically, after every variant; finished variants are skipped)::

    python benchmarks/xcross_probe.py --json benchmarks/results/xcross_probe.json \\
        --variants "raw:input=raw" "unit:input=unit"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import xcross_curve as xc  # noqa: E402  (the curve's data, adapters and item cache)

DEFAULTS: dict[str, Any] = {"input": "raw", "form": "bias", "init": "average", "lr": 1e-3, "wd": 0.0, "static": 0,
                            "loss": "full"}


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = spec.partition(":")
    out = dict(DEFAULTS)
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        if k not in DEFAULTS:
            raise ValueError(f"variant {spec!r}: unknown key {k!r} (use {sorted(DEFAULTS)})")
        out[k] = type(DEFAULTS[k])(float(v) if isinstance(DEFAULTS[k], int | float) else v)
    return name, out


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True, type=Path)
    p.add_argument("--variants", nargs="+", required=True)
    p.add_argument("--train", type=int, default=750, help="training sequences (a prefix of the curve's pool)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--every", type=int, default=6, help="steps between evaluations")
    p.add_argument("--val", type=int, default=256, help="validation queries (fixed random subset)")
    p.add_argument("--train-probe", type=int, default=128, help="fixed training sequences whose loss is tracked")
    own, rest = p.parse_known_args(argv)
    return own, xc.parse(["--json", str(own.json), *rest])


def ranked(model: Any, batches: list[Any]) -> dict[str, float]:
    """Full-softmax loss, NDCG@10 and Recall@10 of fixed batches (one target each)."""
    import torch
    import torch.nn.functional as F

    losses, ndcg, hit = [], [], []
    with torch.no_grad(), model.eval_mode():
        model.eval()
        for b in batches:
            s = model.score(b)  # [B, N+1]
            t = b.targets if b.targets.dim() == 1 else b.targets[:, -1]  # [B]
            s[:, 0] = float("-inf")
            losses.append(F.cross_entropy(s, t, reduction="none"))
            pos = (s >= s.gather(1, t[:, None])).sum(1) - 1  # [B] pessimistic ties: 0 = first
            hit.append((pos < 10).float())
            ndcg.append(torch.where(pos < 10, 1.0 / torch.log2(pos.float() + 2.0), torch.zeros(())))
    return {"loss": float(torch.cat(losses).mean()), "ndcg@10": float(torch.cat(ndcg).mean()),
            "recall@10": float(torch.cat(hit).mean())}


def magnitudes(model: Any, batch: Any) -> list[dict[str, float]]:
    """Per layer: the integrator's input (raw concatenation and what the projection reads) and output."""
    import torch

    rows: list[dict[str, float]] = []

    def hook(integ: Any, args: Any, out: Any) -> None:
        h = args[0]  # [n, B, T, D]
        n, B, T, D = h.shape
        cat = h.permute(1, 2, 0, 3).reshape(-1, n * D)  # [B*T, n*D] padded tokens included
        sq = (cat ** 2).mean(0)  # [n*D]
        feat = integ.features(h).reshape(-1, n * D)  # [B*T, n*D]
        rows.append({"in_rms": float(cat.pow(2).mean().sqrt()), "in_max_abs": float(cat.abs().max()),
                     "in_top5_share": float(sq.topk(5).values.sum() / sq.sum()),
                     "in_token_norm": float(cat.norm(dim=1).mean()),
                     "proj_in_token_norm": float(feat.norm(dim=1).mean()),
                     "out_rms": float(out.pow(2).mean().sqrt())})

    hs = [i.register_forward_hook(hook) for i in model.integrators]
    try:
        with torch.no_grad(), model.eval_mode():
            model.score(batch)
    finally:
        for h in hs:
            h.remove()
    return rows


def run_variant(name: str, v: dict[str, Any], own: argparse.Namespace, args: argparse.Namespace, ctx: Any,
                target: Any, adapters: list[Path], pool: list[Any], val_batches: list[Any],
                step0: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.manual_seed(args.seed)
    model = xc.build("xcross", args, ctx, adapters, {"integrator_init": v["init"], "integrator_input": v["input"],
                                                   "integrator_form": v["form"], "loss": v["loss"]})
    xc.item_cache(model, args, target)
    if v["static"]:
        for integ in model.integrators:
            integ.proj.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=v["lr"], weight_decay=v["wd"])
    exs = pool[: own.train]
    probe = [xc.to_batch(exs[s:s + 64], target.item_domain, args.max_len) for s in range(0, own.train_probe, 64)]
    s_init = [integ.S0 + integ.proj.bias.detach().clone() for integ in model.integrators]  # [n*n] each
    drift: list[float] = []

    def drift_hook(integ: Any, inputs: Any, _out: Any) -> None:
        with torch.no_grad():
            k = list(model.integrators).index(integ)
            drift.append(float((integ.scales(inputs[0]).flatten(2) - s_init[k]).abs().mean()))

    key = f"{v['init']}"
    rec: dict[str, Any] = {"settings": v, "n_trainable": sum(p.numel() for p in params), "steps": [],
                           "evals": [], "magnitudes": magnitudes(model, val_batches[0])}

    def evaluate(step: int) -> None:
        if step == 0 and key in step0:  # every variant of one init starts at the same model
            rec["evals"].append(step0[key])
            return
        e = {"step": step, "train_probe": ranked(model, probe), "valid": ranked(model, val_batches)}
        if step == 0:
            step0[key] = e
        rec["evals"].append(e)
        print(f"[{name}] step {step}: train-probe loss {e['train_probe']['loss']:.4f}, valid loss "
              f"{e['valid']['loss']:.4f} ndcg@10 {e['valid']['ndcg@10']:.4f}", flush=True)

    evaluate(0)
    rng = np.random.default_rng(args.seed)
    step, t0 = 0, time.perf_counter()
    model.train()
    for _ in range(own.epochs):
        order = rng.permutation(len(exs))
        for s in range(0, len(exs), args.batch_size):
            batch = xc.to_batch([exs[i] for i in order[s:s + args.batch_size]], target.item_domain, args.max_len)
            opt.zero_grad()
            loss = model.loss(batch)
            loss.backward()
            opt.step()
            step += 1
            drift.clear()
            hs = [i.register_forward_hook(drift_hook) for i in model.integrators]
            try:
                with torch.no_grad():
                    model.encode_histories(model.histories(batch, training=True)[0][:8])
            finally:
                for h in hs:
                    h.remove()
            rec["steps"].append({"step": step, "loss": float(loss.detach()), "s_drift": float(np.mean(drift))})
            if step % own.every == 0:
                evaluate(step)
                model.train()
    if step % own.every:
        evaluate(step)
    rec["train_seconds_with_evals"] = round(time.perf_counter() - t0, 1)
    return rec


def main(argv: list[str] | None = None) -> None:
    from mosaicrec.config import EvalConfig
    from mosaicrec.evaluation.ranking import Evaluator
    from mosaicrec.utils import write_json

    own, args = parse(argv)
    variants = [parse_variant(s) for s in own.variants]
    args.work = args.work.resolve()
    out: dict[str, Any] = json.loads(own.json.read_text()) if own.json.exists() else {}
    out["setup"] = {"train_sequences": own.train, "epochs": own.epochs, "every": own.every, "val_queries": own.val,
                    "train_probe": own.train_probe, "batch_size": args.batch_size, "backbone": args.backbone,
                    "target_data": args.target_data, "sources": args.sources, "seed": args.seed}
    out.setdefault("variants", {})
    step0: dict[str, Any] = {}
    adapters = xc.source_adapters(args)
    target = xc.load(args.target_data, args.work)
    ctx = xc.context(target, args)
    pool = xc.examples(target, None, args.target_users, args.seed)
    ev = Evaluator(target, EvalConfig(ks=[10], mode="full"), "valid", args.max_len,
                   cache_dir=args.work / "xcross_curve", max_queries=own.val, subset_seed=args.seed)
    val_batches = [ev.batch(np.arange(s, min(s + 64, ev.n_queries))) for s in range(0, ev.n_queries, 64)]
    for name, v in variants:
        if name in out["variants"] and out["variants"][name]["settings"] == v:
            print(f"[{name}] done, skipped", flush=True)
            continue
        out["variants"][name] = run_variant(name, v, own, args, ctx, target, adapters, pool, val_batches, step0)
        write_json(own.json, out)


if __name__ == "__main__":
    main()
