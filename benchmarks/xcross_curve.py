"""X-Cross data-efficiency curve (issue 7): target-domain accuracy vs fraction of target users.

Methods (all on the same frozen base LM, same text protocol, same frozen item tower):

* ``xcross``: the source LoRA adapters side by side, layer integrators (+ nothing else) trained
  on the target fraction;
* ``lora``: ``lm_seqrec`` with a fresh LoRA adapter trained on the target fraction alone;
* ``best_source``: each source adapter alone, no target training; the one with the better
  validation NDCG@10 (on ``--val-users`` valid queries) is tested;
* ``adapter_average``: the adapters with every integrator fixed at 1/n (static average of the
  streams at every layer), no target training.

Writes ``{"<method>": {"<fraction>": {"ndcg@10", "recall@10"}}, "params": {"<method>": n},
"epoch_seconds": {...}, "setup": {...}}``. Resumable: every finished (method, fraction) is
written at once (atomically) and skipped on the next run; the source adapters and the base
item vectors are cached under ``--work``. Run pieces as separate jobs, e.g.::

    python benchmarks/xcross_curve.py --json benchmarks/results/xcross_curve.json --methods sources
    python benchmarks/xcross_curve.py --json ... --methods lora --fractions 0.25 0.5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("xcross", "lora", "best_source", "adapter_average")
EXTRA = ("base_model",)  # reference: the base LM without any adapter, no training
REPO = Path(__file__).resolve().parents[1]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True, type=Path)
    p.add_argument("--methods", nargs="+", default=["sources", *METHODS],
                   choices=["sources", *METHODS, *EXTRA])
    p.add_argument("--fractions", nargs="+", type=float, default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--work", type=Path, default=REPO / "work")
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--sources", nargs="+", default=["Food", "Kitchen"],
                   help="source domains: NAME (a domain of --source-data) or NAME=DATASET_YAML")
    p.add_argument("--source-data", default="configs/datasets/food_kitchen.yaml")
    p.add_argument("--target-data", default="configs/datasets/scientific.yaml")
    p.add_argument("--target-domain", default=None,
                   help="one domain of --target-data as the target (its own sequences, items and queries)")
    p.add_argument("--source-users", type=int, default=1500, help="training sequences per source domain")
    p.add_argument("--target-users", type=int, default=3000, help="the target pool that is '100%%'")
    p.add_argument("--test-users", type=int, default=1000, help="test queries (fixed random subset)")
    p.add_argument("--val-users", type=int, default=500, help="valid queries for choosing best_source")
    p.add_argument("--history-tokens", type=int, default=64)
    p.add_argument("--item-tokens", type=int, default=32)
    p.add_argument("--max-len", type=int, default=20, help="history items read before the token cut")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--source-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--xcross-init", default="identity",
                   help="integrator init of method xcross; other than identity the results go to key xcross@INIT")
    p.add_argument("--integrator-input", default="raw", choices=["raw", "layernorm", "unit"],
                   help="xcross integrator input (see models/xcross/multilora.py)")
    p.add_argument("--integrator-form", default="bias", choices=["bias", "residual"])
    p.add_argument("--xcross-loss", default="full", choices=["full", "in_batch", "sampled"],
                   help="training loss of method xcross (the others: full softmax over the target's items)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW decoupled weight decay")
    p.add_argument("--val-every", type=int, default=0,
                   help="early stopping: validation NDCG@10 (--val-users queries) at step 0 and every N steps "
                        "and at the end; the best state is kept (0 = off)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--key", default=None, help="JSON key of method xcross's results (a variant's name)")
    p.add_argument("--force", action="store_true", help="recompute finished entries")
    p.add_argument("--table", action="store_true", help="only print the JSON's results as a markdown table")
    return p.parse_args(argv)


# ---------------------------------------------------------------------- data
def load(cfg_path: str, work: Path) -> Any:
    from mosaicrec.data.prepare import ensure_prepared, load_prepare_config
    from mosaicrec.data.schema import PreparedData

    return PreparedData.load(ensure_prepared(load_prepare_config(str(REPO / cfg_path), []), work))


def examples(data: Any, domain: int | None, n: int | None, seed: int) -> list[tuple[list[int], int]]:
    """One example per user: (its train items before the last, restricted to ``domain``; the last).

    Users need >= 2 such items; ``n`` of them are drawn with ``seed`` (nested: a smaller ``n``
    is a prefix of a larger one)."""
    v = data.views(("train",))
    seqs = v.merged if domain is None else v.domain[domain]
    out = []
    for u in range(data.n_users):
        s = [int(x) for x in seqs.seq(u)]
        if len(s) >= 2:
            out.append((s[:-1], s[-1]))
    order = np.random.default_rng(seed).permutation(len(out))
    return [out[i] for i in (order if n is None else order[:n])]


def to_batch(exs: list[tuple[list[int], int]], item_domain: np.ndarray, max_len: int) -> Any:
    import torch

    from mosaicrec.data.batches import SeqBatch

    B = len(exs)
    items = torch.zeros(B, max_len, dtype=torch.long)  # [B, L] left-padded
    targets = torch.zeros(B, max_len, dtype=torch.long)  # [B, L] target at the last position only
    for b, (h, t) in enumerate(exs):
        h = h[-max_len:]
        items[b, max_len - len(h):] = torch.tensor(h)
        targets[b, -1] = t
    dom = torch.as_tensor(item_domain, dtype=torch.long).clamp(min=0)  # [N+1]
    return SeqBatch(items=items, domains=dom[items], lengths=(items != 0).sum(1), users=torch.arange(B),
                    targets=targets, target_domains=dom[targets])


def context(data: Any, args: argparse.Namespace) -> Any:
    from mosaicrec.models.base import ModelContext
    from mosaicrec.training.run import item_fields

    return ModelContext(n_items=data.n_items, n_users=data.n_users, n_domains=data.n_domains,
                        item_domain=data.item_domain, max_len=args.max_len, domains=data.domains,
                        extra={"item_fields": item_fields(data)})


def tag(name: str) -> str:
    """A file-name-safe id of a backbone name or folder."""
    import hashlib

    return name if name.replace("-", "").replace("_", "").isalnum() else hashlib.sha1(name.encode()).hexdigest()[:10]


def common(args: argparse.Namespace) -> dict[str, Any]:
    return {"backbone": args.backbone, "history_tokens": args.history_tokens, "item_tokens": args.item_tokens,
            "item_tower": "frozen", "fields": ["title"]}


# ---------------------------------------------------------------------- training
def train(model: Any, exs: list[tuple[list[int], int]], args: argparse.Namespace, epochs: int,
          item_domain: np.ndarray, log: str, validate: Any = None,
          step0: dict[str, float] | None = None) -> tuple[list[float], list[dict[str, float]]]:
    """AdamW (decoupled ``--weight-decay``; 0 = Adam) on the trainable parameters.

    With ``validate`` (a function model -> validation NDCG@10) and ``--val-every N``: the model is
    validated at step 0, every N steps and at the end, and the best state of the trainable
    parameters (the first one on ties, so step 0 wins unless training improves) is restored.
    ``step0`` (a dict) memoises the step-0 validation across calls whose initial model is the
    same (same seed and config: e.g. the fractions of one method).
    Returns the wall seconds of every epoch (training only) and the validation log."""
    import torch

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params.values(), lr=args.lr, weight_decay=args.weight_decay)
    rng = np.random.default_rng(args.seed)
    seconds: list[float] = []
    val_log: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, Any]] | None = None
    step = 0

    def check() -> None:
        nonlocal best
        t0 = time.perf_counter()
        if step == 0 and step0 is not None and "ndcg@10" in step0:
            v = step0["ndcg@10"]
        else:
            v = float(validate(model))
            if step == 0 and step0 is not None:
                step0["ndcg@10"] = v
        model.train()
        val_log.append({"step": step, "ndcg@10": v, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"[{log}] step {step}: valid ndcg@10 {v:.4f}", flush=True)
        if best is None or v > best[0]:
            best = (v, step, {n: p.detach().clone() for n, p in params.items()})

    stopping = validate is not None and args.val_every > 0
    model.train()
    if stopping:
        check()
    for ep in range(epochs):
        t0, losses, t_val = time.perf_counter(), [], 0.0
        order = rng.permutation(len(exs))
        for s in range(0, len(exs), args.batch_size):
            batch = to_batch([exs[i] for i in order[s:s + args.batch_size]], item_domain, args.max_len)
            opt.zero_grad()
            loss = model.loss(batch)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            last = ep == epochs - 1 and s + args.batch_size >= len(exs)
            if stopping and (step % args.val_every == 0 or last):
                tv = time.perf_counter()
                check()
                t_val += time.perf_counter() - tv
        seconds.append(time.perf_counter() - t0 - t_val)
        print(f"[{log}] epoch {ep + 1}/{epochs}: loss {np.mean(losses):.4f} "
              f"(first batches {np.mean(losses[:5]):.4f}, last {np.mean(losses[-5:]):.4f}), "
              f"{seconds[-1]:.0f} s, {len(exs)} sequences", flush=True)
    if best is not None:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(best[2][n])
        val_log.append({"chosen_step": best[1], "ndcg@10": best[0]})
        print(f"[{log}] restored step {best[1]} (valid ndcg@10 {best[0]:.4f})", flush=True)
    model.eval()
    return seconds, val_log


class DomainOnly:
    """Evaluate only the queries whose target is in one domain, with histories cut to that domain.

    For a target domain of a multi-domain dataset (the reverse directions): the Evaluator ranks
    every query, but the rows of other domains get constant scores without running the model
    (their metrics are ignored; ``evaluate`` reads the domain's own metrics), and each history
    keeps only the target domain's items (a history with none keeps its items unchanged)."""

    def __init__(self, model: Any, domain: int, item_domain: np.ndarray) -> None:
        import torch

        self.model, self.domain = model, domain
        self.item_domain = torch.as_tensor(item_domain, dtype=torch.long)  # [N+1]
        self.unfiltered = 0  # rows whose history had no item of the domain

    @property
    def training(self) -> bool:
        return bool(self.model.training)

    def eval(self) -> DomainOnly:
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> DomainOnly:
        self.model.train(mode)
        return self

    def score(self, batch: Any) -> Any:
        import torch

        from mosaicrec.data.batches import SeqBatch

        out = torch.zeros(len(batch), len(self.item_domain))  # [B, N+1]
        rows = torch.nonzero(batch.target_domains == self.domain).flatten()  # [R]
        if len(rows) == 0:
            return out
        items = batch.items[rows]  # [R, L] left-padded
        keep = (self.item_domain[items] == self.domain) & (items != 0)  # [R, L]
        empty = ~keep.any(1)  # [R]
        self.unfiltered += int(empty.sum())
        keep |= empty[:, None] & (items != 0)
        L = items.shape[1]
        pos = L - keep.flip(1).cumsum(1).flip(1)  # [R, L] left-padded position of each kept item
        new = torch.zeros_like(items)
        r, c = torch.nonzero(keep, as_tuple=True)
        new[r, pos[r, c]] = items[r, c]
        dom = self.item_domain.clamp(min=0)
        sub = SeqBatch(items=new, domains=dom[new], lengths=(new != 0).sum(1), users=batch.users[rows],
                       targets=batch.targets[rows], target_domains=batch.target_domains[rows])
        out[rows] = self.model.score(sub)
        return out


def evaluate(model: Any, data: Any, split: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    from mosaicrec.config import EvalConfig
    from mosaicrec.evaluation.ranking import Evaluator

    dom = target_domain(data, args)
    ev = Evaluator(data, EvalConfig(ks=[10], mode="full", batch_size=128), split, args.max_len,
                   cache_dir=args.work / "xcross_curve", max_queries=None if dom is not None else n,
                   subset_seed=args.seed)
    res = ev.evaluate(model if dom is None else DomainOnly(model, dom, data.item_domain))
    m = res.metrics.get("overall", res.metrics) if dom is None else res.metrics[args.target_domain]
    return {"ndcg@10": float(m["ndcg@10"]), "recall@10": float(m.get("recall@10", m.get("hr@10"))),
            "queries": res.n_queries if dom is None else res.n_queries_by_domain[args.target_domain],
            "eval_seconds": round(res.seconds, 1)}


def target_domain(data: Any, args: argparse.Namespace) -> int | None:
    """Index of ``--target-domain`` in the target data (None: the whole dataset is the target)."""
    if args.target_domain is None:
        return None
    if args.target_domain not in data.domains:
        raise ValueError(f"--target-domain {args.target_domain!r}: {args.target_data} has domains {data.domains}")
    return int(data.domains.index(args.target_domain))


# ---------------------------------------------------------------------- pieces
def source_adapters(args: argparse.Namespace) -> list[Path]:
    import torch

    from mosaicrec.models.xcross.lm_seqrec import LMSeqRec, LMSeqRecConfig

    root = args.work / "xcross_curve" / f"adapters-{tag(args.backbone)}-r{args.lora_r}-n{args.source_users}"
    names = [d.partition("=")[0] for d in args.sources]
    paths = [root / d for d in names]
    if all((p / "adapter_config.json").exists() for p in paths):
        return paths
    for spec, d, path in zip(args.sources, names, paths, strict=True):
        if (path / "adapter_config.json").exists():
            continue
        data = load(spec.partition("=")[2] or args.source_data, args.work)
        if d not in data.domains:
            raise ValueError(f"--sources {spec!r}: {data.root} has domains {data.domains}")
        ctx = context(data, args)
        torch.manual_seed(args.seed)
        exs = examples(data, data.domains.index(d), args.source_users, args.seed)
        model = LMSeqRec(LMSeqRecConfig(**common(args), mode="lora", lora_r=args.lora_r,
                                        lora_alpha=2.0 * args.lora_r, loss="in_batch"), ctx)
        secs, _ = train(model, exs, args, args.source_epochs, data.item_domain, f"source {d}")
        model.save_adapter(path)
        (path / "mosaicrec_train.json").write_text(json.dumps(
            {"domain": d, "sequences": len(exs), "epoch_seconds": secs, "trainable": model.n_trainable(),
             "data": str(data.root), "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    return paths


def item_cache(model: Any, args: argparse.Namespace, data: Any) -> None:
    """Base-model item vectors of the target, computed once and shared by every method."""
    import torch
    from safetensors.torch import load_file, save_file

    dom = target_domain(data, args)
    name = Path(str(data.root)).name + (f"-{args.target_domain}" if dom is not None else "")
    path = args.work / "xcross_curve" / f"items-{name}-{tag(args.backbone)}-{args.item_tokens}.safetensors"
    if path.exists():
        model.set_item_cache(load_file(str(path))["v"])
        return
    t0 = time.perf_counter()
    if dom is None:
        v = model.item_vectors()
    else:  # only the target domain's items (the others are never candidates): zero vectors
        ids = np.flatnonzero(np.asarray(data.item_domain) == dom)
        v = torch.zeros(data.n_items + 1, model.dim)  # [N+1, D]
        with torch.no_grad(), model.eval_mode():
            for s in range(0, len(ids), 256):
                v[ids[s:s + 256]] = model.encode_items([int(i) for i in ids[s:s + 256]])
        model.set_item_cache(v)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"v": v.contiguous()}, str(path))
    print(f"item vectors {tuple(v.shape)} in {time.perf_counter() - t0:.0f} s -> {path}", flush=True)


def build(method: str, args: argparse.Namespace, ctx: Any, adapters: list[Path], extra: dict[str, Any]) -> Any:
    from mosaicrec.models.xcross.lm_seqrec import LMSeqRec, LMSeqRecConfig
    from mosaicrec.models.xcross.model import XCross, XCrossConfig

    kw = {**common(args), "loss": "full", "head": "none", **extra}
    if method == "lora":
        return LMSeqRec(LMSeqRecConfig(**kw, mode="lora", lora_r=args.lora_r, lora_alpha=2.0 * args.lora_r), ctx)
    if method == "source":
        return LMSeqRec(LMSeqRecConfig(**kw, mode="frozen"), ctx)
    init = "average" if method == "adapter_average" else args.xcross_init
    kw = {**common(args), "head": "none", "loss": args.xcross_loss if method == "xcross" else "full",
          "integrator_init": init, "integrator_input": args.integrator_input, "integrator_form": args.integrator_form,
          **extra}  # ``extra`` (the probe's variants) overrides
    return XCross(XCrossConfig(**kw, adapters=[str(a) for a in adapters]), ctx)


def table(out: dict[str, Any]) -> str:
    """Markdown: one row per method, NDCG@10 / Recall@10 per fraction, trainable parameters."""
    fracs = sorted({k for m in (*METHODS, *EXTRA) for k in out.get(m, {})}, key=float)  # xcross@* share them
    head = "| method | trainable params | " + " | ".join(f"{float(f):.0%} NDCG@10 / R@10" for f in fracs) + " | s/epoch |"
    rows = [head, "|---|---:|" + "---:|" * len(fracs) + "---|"]
    for m in (*METHODS, *EXTRA, *sorted(k for k in out if k.startswith("xcross@"))):
        if m not in out:
            continue
        cells = [f"{out[m][f]['ndcg@10']:.4f} / {out[m][f]['recall@10']:.4f}" if f in out[m] else "-" for f in fracs]
        secs = out.get("epoch_seconds", {}).get(m, {})
        st = ", ".join(f"{float(f):.0%}: {np.mean(v):.0f}" for f, v in sorted(secs.items(), key=lambda x: float(x[0])))
        rows.append(f"| {m} | {out['params'].get(m, '-'):,} | " + " | ".join(cells) + f" | {st or 'no training'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    import torch

    from mosaicrec.utils import write_json

    args = parse(argv)
    if args.table:
        print(table(json.loads(args.json.read_text())))
        return
    args.work = args.work.resolve()
    out: dict[str, Any] = json.loads(args.json.read_text()) if args.json.exists() else {}
    out.setdefault("params", {})
    out.setdefault("epoch_seconds", {})
    setup = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    if k not in ("json", "methods", "fractions", "force", "work", "table", "xcross_init", "key")}
    if not args.key:  # a named variant (other lr, ...) records its settings in its entries only
        out["setup"] = setup
    out.setdefault("setup", setup)

    def save() -> None:
        write_json(args.json, out)

    adapters = source_adapters(args)
    out["setup"]["source_adapters"] = {p.name: json.loads((p / "mosaicrec_train.json").read_text())["epoch_seconds"]
                                       for p in adapters if (p / "mosaicrec_train.json").exists()}
    save()
    target = load(args.target_data, args.work)
    ctx = context(target, args)
    pool = examples(target, target_domain(target, args), args.target_users, args.seed)
    fr_keys = [f"{f:g}" for f in args.fractions]
    step0s: dict[str, dict[str, float]] = {}  # the untrained model's validation, per method
    for method in [m for m in args.methods if m != "sources"]:
        key = f"xcross@{args.xcross_init}" if method == "xcross" and args.xcross_init != "identity" else method
        if method == "xcross" and args.key:
            key = args.key
        res = out.setdefault(key, {})
        if method in ("best_source", "adapter_average", "base_model"):  # no target training: same for every fraction
            if all(k in res for k in fr_keys) and not args.force:
                continue
            if method == "best_source":
                best: tuple[float, str, Any] | None = None
                for a in adapters:
                    model = build("source", args, ctx, adapters, {"init_adapter": str(a)})
                    item_cache(model, args, target)
                    val = evaluate(model, target, "valid", args.val_users, args)
                    print(f"[best_source] {a.name}: valid ndcg@10 {val['ndcg@10']:.4f}", flush=True)
                    if best is None or val["ndcg@10"] > best[0]:
                        best = (val["ndcg@10"], a.name, model)
                assert best is not None
                model, chosen = best[2], best[1]
            elif method == "base_model":
                model, chosen = build("source", args, ctx, adapters, {}), None
                item_cache(model, args, target)
            else:
                model, chosen = build("adapter_average", args, ctx, adapters, {}), None
                item_cache(model, args, target)
            test = evaluate(model, target, "test", args.test_users, args)
            if chosen:
                test["source"] = chosen
            print(f"[{method}] test {test}", flush=True)
            for k in fr_keys:
                res[k] = test
            out["params"][method] = 0
            save()
            continue
        for f, k in zip(args.fractions, fr_keys, strict=True):
            if k in res and not args.force:
                continue
            torch.manual_seed(args.seed)
            model = build(method, args, ctx, adapters, {})
            item_cache(model, args, target)
            exs = pool[: max(1, round(f * len(pool)))]
            secs, val_log = train(model, exs, args, args.epochs, target.item_domain, f"{method} {k}",
                                  lambda m: evaluate(m, target, "valid", args.val_users, args)["ndcg@10"],
                                  step0s.setdefault(key, {}))
            test = evaluate(model, target, "test", args.test_users, args)
            test.update(train_sequences=len(exs), epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                        val_every=args.val_every)
            if val_log:
                test["validation"] = val_log
            if method == "xcross":
                test.update(integrator_init=args.xcross_init, integrator_input=args.integrator_input,
                            integrator_form=args.integrator_form, loss=args.xcross_loss)
            print(f"[{key} {k}] test {test}", flush=True)
            res[k] = test
            out["params"][key] = model.n_trainable()
            out["epoch_seconds"].setdefault(key, {})[k] = [round(s, 1) for s in secs]
            save()


if __name__ == "__main__":
    main()
