"""Our SASRec vs RecBole 1.2.1's SASRec, side by side on MovieLens-100K (issue 2's speed target).

    python benchmarks/vs_recbole.py --json benchmarks/results/vs_recbole.json \
        --threads 2 --recbole-max-epochs 4          # under HEAVY_ALL=1 /work/bin/heavy

Both sides get the same data (the ml-100k atomic files of ../shared/data, leave-one-out by
timestamp, no filtering), the same hyper-parameters (:data:`HP`: CE loss over all items, batch
256, Adam lr 1e-3, 2 layers, 2 heads, hidden 64, inner 256, dropout 0.5 on hidden states and
attention, max length 50, early stopping on validation NDCG@10), the same number of torch
threads and the same evaluation protocol (full ranking with each user's already-seen items
excluded, as RecBole's full-sort evaluation does), one after the other on this machine. An epoch covers every training interaction once as
a prediction target on both sides (RecBole: one prefix per interaction; ours: windows).

Measured per side: ``epoch_seconds`` (mean training time of an epoch, validation excluded),
``seconds_to_best`` (training + validation wall time up to and including the best validation
epoch), ``eval_seconds`` (one full-ranking evaluation of all test users, the best model's
test evaluation; ours also lists five repeats of it under ``eval_seconds_repeats``), test ``ndcg@10``,
``hr@10``, ``mrr``, and the training FLOP/s (FLOPs of an epoch counted with torch's
``FlopCounterMode`` / epoch_seconds) against this machine's fp32 matmul peak, measured here.

RecBole to early stop takes about an hour on this data (shared/data/README.md), so
``--recbole-max-epochs`` caps it. When the cap cuts its training, RecBole's ``seconds_to_best``
is NOT measured: the JSON has ``null`` there, the measured lower bound (the time to the best
epoch within the cap; the true best comes no earlier) under ``seconds_to_best_lower_bound``, and
``measured``/``not_measured`` lists per side. Its ``ndcg@10`` is then the measured test score of
its best model within the cap (``ndcg@10_of`` says so). Nothing is estimated.

RecBole runs in its own virtual environment (created on first use, ``--recbole-venv``; it
needs old numpy/pandas/scipy, a setuptools that still has ``pkg_resources`` and
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for its checkpoint reload). This file is also the
driver run inside that environment (``--recbole-driver``), so the top level imports only the
standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"  # holds ml-100k/ml-100k.{inter,item,user}
RECBOLE_PINS = ["torch==2.13.0", "recbole==1.2.1", "setuptools>=77,<81", "numpy<2", "pandas<2.2", "scipy<1.13"]
DEFAULT_VENV = Path.home() / ".cache" / "mosaicrec" / "recbole-1.2.1"
HP: dict[str, Any] = {"hidden": 64, "layers": 2, "heads": 2, "inner": 256, "dropout": 0.5, "attn_dropout": 0.5,
                      "batch_size": 256, "lr": 1e-3, "max_len": 50, "patience": 8, "eval_batch_size": 4096,
                      "seed": 2020, "loss": "ce"}


# ---- shared -------------------------------------------------------------------------------
def matmul_peak(threads: int, n: int = 2048, reps: int = 6) -> float:
    """Best fp32 GFLOP/s of an n x n matmul with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def count_train_flops(step: Any, batches: Any) -> float:
    """Total FLOPs (forward + backward) of ``step(batch)`` over ``batches``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        for batch in batches:
            step(batch).backward()
    return float(counter.get_total_flops())


def timing_summary(train_s: list[float], val_s: list[float], scores: list[float]) -> dict[str, Any]:
    """epoch_seconds, best epoch (first maximum) and seconds_to_best from per-epoch timings."""
    best = max(range(len(scores)), key=lambda e: (scores[e], -e))
    return {"epochs": len(train_s), "epoch_seconds": sum(train_s) / len(train_s), "best_epoch": best,
            "val_seconds": sum(val_s) / len(val_s), "seconds_to_best": sum(train_s[: best + 1]) + sum(val_s[: best + 1]),
            "valid_ndcg@10_per_epoch": scores}


# ---- RecBole side (runs inside RecBole's venv) ----------------------------------------------
def recbole_driver(params: dict[str, Any], out: Path) -> None:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    torch.set_num_threads(params["threads"])
    hp = params["hp"]
    config = Config(model="SASRec", dataset="ml-100k", config_dict={
        "data_path": params["data_path"], "checkpoint_dir": params["checkpoint_dir"], "use_gpu": False,
        "show_progress": False, "worker": 0, "seed": hp["seed"], "reproducibility": True,
        "n_layers": hp["layers"], "n_heads": hp["heads"], "hidden_size": hp["hidden"], "inner_size": hp["inner"],
        "hidden_dropout_prob": hp["dropout"], "attn_dropout_prob": hp["attn_dropout"], "hidden_act": "gelu",
        "loss_type": "CE", "train_neg_sample_args": None, "MAX_ITEM_LIST_LENGTH": hp["max_len"],
        "train_batch_size": hp["batch_size"], "eval_batch_size": hp["eval_batch_size"], "learning_rate": hp["lr"],
        "epochs": params["max_epochs"], "stopping_step": hp["patience"], "eval_step": 1,
        "valid_metric": "NDCG@10", "metrics": ["Hit", "NDCG", "MRR"], "topk": [10],
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"}})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    prep_s = time.perf_counter() - t0
    init_seed(config["seed"], config["reproducibility"])
    model = SASRec(config, train_data.dataset)
    trainer = Trainer(config, model)
    train_s: list[float] = []
    val_s: list[float] = []
    scores: list[float] = []

    def timed(fn: Any, sink: list[float]) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            r = fn(*a, **k)
            sink.append(time.perf_counter() - t)
            return r
        return wrapper

    trainer._train_epoch = timed(trainer._train_epoch, train_s)
    trainer._valid_epoch = timed(trainer._valid_epoch, val_s)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False,
                callback_fn=lambda epoch, score: scores.append(float(score)))
    t0 = time.perf_counter()
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    eval_s = time.perf_counter() - t0
    # FLOPs of an epoch: count the first full batches and scale by the epoch's targets.
    model.train()
    batches, n_seen = [], 0
    for inter in train_data:
        if len(inter) == hp["batch_size"]:
            batches.append(inter)
            n_seen += len(inter)
        if len(batches) == params["flop_batches"]:
            break
    flops = count_train_flops(model.calculate_loss, batches)
    n_targets = len(train_data.dataset)
    res = timing_summary(train_s, val_s, scores)
    res.update({"eval_seconds": eval_s, "ndcg@10": float(test["ndcg@10"]), "hr@10": float(test["hit@10"]),
                "mrr": float(test["mrr@10"]), "mrr_is": "MRR@10 (RecBole's MRR is cut at k)",
                "stopped_early": len(train_s) < params["max_epochs"], "max_epochs": params["max_epochs"],
                "train_targets_per_epoch": n_targets, "flops_per_epoch": flops / n_seen * n_targets,
                "flops_counted_on": f"{len(batches)} batches of {hp['batch_size']}, scaled to the epoch",
                "data_prep_seconds": prep_s, "n_items": int(dataset.item_num - 1), "n_users": int(dataset.user_num - 1),
                "versions": {"recbole": __import__("recbole").__version__, "torch": torch.__version__}})
    out.write_text(json.dumps(res))


def ensure_venv(venv: Path) -> Path:
    """RecBole's own virtual environment (created with the pinned packages if missing)."""
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import recbole, sys; sys.exit(recbole.__version__ != '1.2.1')"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    print(f"[vs_recbole] creating RecBole's venv at {venv}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *RECBOLE_PINS], check=True)
    subprocess.run(probe, check=True)
    return py


def run_recbole(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    py = ensure_venv(Path(args.recbole_venv))
    out = work / "recbole.json"
    params = {"threads": args.threads, "hp": HP, "max_epochs": args.recbole_max_epochs, "data_path": str(args.data),
              "checkpoint_dir": str(work / "recbole-saved"), "flop_batches": args.flop_batches}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONPATH": ""}
    t0 = time.perf_counter()
    subprocess.run([str(py), str(Path(__file__).resolve()), "--recbole-driver", json.dumps(params), str(out)],
                   env=env, cwd=work, check=True)
    res = json.loads(out.read_text())
    res["process_seconds"] = time.perf_counter() - t0
    return res


# ---- our side ---------------------------------------------------------------------------------
def run_ours(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from mosaicrec.config import EvalConfig, ExperimentConfig, PrepareConfig, TrainConfig
    from mosaicrec.data.schema import PreparedData
    from mosaicrec.training.data import WindowDataset, build_windows
    from mosaicrec.training.engine import train_experiment
    from mosaicrec.training.run import build_model, resolve_data

    torch.set_num_threads(args.threads)
    cfg = ExperimentConfig(
        name="vs_recbole_ours",
        data=PrepareConfig(source="movielens", path=str(args.data / "ml-100k"), name="ml100k", split="loo"),
        model={"name": "sasrec", "hidden": HP["hidden"], "layers": HP["layers"], "heads": HP["heads"],
               "ffn_mult": HP["inner"] // HP["hidden"], "dropout": HP["dropout"], "attn_dropout": HP["attn_dropout"],
               "loss": HP["loss"]},
        train=TrainConfig(epochs=args.ours_max_epochs, batch_size=args.ours_batch_size, lr=HP["lr"], max_len=HP["max_len"],
                          patience=HP["patience"], seed=HP["seed"], monitor="ndcg@10", accelerator="cpu"),
        # RecBole's full-sort evaluation sets the scores of each user's history items to -inf
        # (trainer._full_sort_batch_eval: scores[history_index] = -inf): same protocol here.
        eval=EvalConfig(ks=[10], mode="full", batch_size=HP["eval_batch_size"], mask_seen=True))
    t0 = time.perf_counter()
    data = PreparedData.load(resolve_data(cfg.data, work / "data"))
    prep_s = time.perf_counter() - t0
    res = train_experiment(cfg, work / "ours-run", work / "data", progress=False)
    per_epoch = [e for e in res.extra["per_epoch"] if e["valid"] is not None]
    out = timing_summary([e["train"] for e in per_epoch], [e["val"] for e in per_epoch],
                         [e["valid"]["ndcg@10"] for e in per_epoch])
    # FLOPs of one epoch: every batch of the epoch (batch lengths vary), forward + backward.
    model = build_model(cfg, data, work / "data").train()
    ds = WindowDataset(build_windows(data, HP["max_len"]))
    bs = args.ours_batch_size
    batches = [ds.collate(list(range(i, min(i + bs, len(ds))))) for i in range(0, len(ds), bs)]
    flops = count_train_flops(model.loss, batches)
    test = res.test["overall"] if res.test else {}
    # The same test evaluation of the same best model with the forward under bf16 autocast
    # (eval.precision; scores compared in float32): reported beside the float32 default.
    from mosaicrec.evaluation.ranking import Evaluator
    from mosaicrec.training.run import load_run

    run = load_run(res.run_dir)
    ev_cfg = cfg.eval.model_copy(update={"precision": "bfloat16"})
    t0 = time.perf_counter()
    bf16 = Evaluator(run.data, ev_cfg, "test", cfg.train.max_len).evaluate(run.model)
    bf16_s = time.perf_counter() - t0
    # The single timed test evaluation above is one noisy sample of ~0.1 s: five more of the same
    # evaluation (float32, fresh Evaluator each time), reported beside it, never instead of it.
    repeats = []
    for _ in range(5):
        t0 = time.perf_counter()
        Evaluator(run.data, cfg.eval, "test", cfg.train.max_len).evaluate(run.model)
        repeats.append(time.perf_counter() - t0)
    out.update({"eval_seconds": res.eval_seconds, "ndcg@10": test["ndcg@10"], "hr@10": test["hr@10"],
                "mrr": test["mrr"], "mrr_is": "MRR over the full ranking (not cut at k)",
                "eval_seconds_repeats": repeats, "eval_seconds_bf16": bf16_s, "ndcg@10_bf16": bf16.metrics["overall"]["ndcg@10"],
                "hr@10_bf16": bf16.metrics["overall"]["hr@10"],
                "stopped_early": res.epochs < args.ours_max_epochs, "max_epochs": args.ours_max_epochs,
                "train_targets_per_epoch": ds.w.n_targets, "flops_per_epoch": flops,
                "batch_windows": bs, "mean_targets_per_step": ds.w.n_targets / len(batches), "steps_per_epoch": len(batches),
                "flops_counted_on": "every batch of one epoch", "data_prep_seconds": prep_s,
                "n_items": data.n_items, "n_users": data.n_users,
                "versions": {"torch": torch.__version__}})
    return out


# ---- main -------------------------------------------------------------------------------------
def finish_side(res: dict[str, Any], peak: float) -> None:
    res["train_gflops_per_s"] = res["flops_per_epoch"] / res["epoch_seconds"] / 1e9
    res["fraction_of_matmul_peak"] = res["train_gflops_per_s"] / peak
    res["measured"] = ["epoch_seconds", "eval_seconds", "ndcg@10", "hr@10", "mrr", "flops_per_epoch",
                       "train_gflops_per_s"]
    res["not_measured"] = []
    if res["stopped_early"]:
        res["measured"].append("seconds_to_best")
        res["ndcg@10_of"] = "the early-stopped best model"
    else:
        res["seconds_to_best_lower_bound"] = res["seconds_to_best"]
        res["seconds_to_best"] = None
        res["not_measured"].append("seconds_to_best")
        res["ndcg@10_of"] = (f"the best model of the first {res['max_epochs']} epochs (training cut by the cap, "
                             "not early-stopped)")


def speedups(ours: dict[str, Any], rb: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {"epoch": rb["epoch_seconds"] / ours["epoch_seconds"],
                         "eval": rb["eval_seconds"] / ours["eval_seconds"]}
    if ours.get("eval_seconds_bf16"):
        s["eval_bf16"] = rb["eval_seconds"] / ours["eval_seconds_bf16"]
    if ours["seconds_to_best"] is not None and rb["seconds_to_best"] is not None:
        s["to_best"] = rb["seconds_to_best"] / ours["seconds_to_best"]
    elif ours["seconds_to_best"] is not None:
        s["to_best_at_least"] = rb["seconds_to_best_lower_bound"] / ours["seconds_to_best"]
    s["ndcg@10_ours_minus_recbole"] = ours["ndcg@10"] - rb["ndcg@10"]
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=False, help="write the results here")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")),
                   help="torch threads for both sides (default: $OMP_NUM_THREADS or 1)")
    p.add_argument("--recbole-max-epochs", type=int, default=4, help="cap on RecBole's epochs (300: to early stop)")
    p.add_argument("--ours-max-epochs", type=int, default=300, help="cap on our epochs")
    p.add_argument("--ours-batch-size", type=int, default=8, help=(
        "our batch in windows of up to max_len targets (default 8: ~330 targets per Adam step, "
        "close to RecBole's 256 one-target sequences)"))
    p.add_argument("--recbole-from", type=Path, help=(
        "reuse the 'recbole' side of an earlier JSON of this script instead of running RecBole "
        "(the output says so: recbole.reused_from)"))
    p.add_argument("--recbole-venv", default=str(DEFAULT_VENV))
    p.add_argument("--skip-recbole", action="store_true", help="only our side (no comparison written)")
    p.add_argument("--flop-batches", type=int, default=20, help="RecBole batches counted for FLOPs")
    p.add_argument("--data", type=Path, default=DATA, help="folder holding ml-100k/")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--recbole-driver", nargs=2, metavar=("PARAMS", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.recbole_driver:
        recbole_driver(json.loads(args.recbole_driver[0]), Path(args.recbole_driver[1]))
        return 0
    if not (args.data / "ml-100k" / "ml-100k.inter").exists():
        raise FileNotFoundError(f"{args.data / 'ml-100k' / 'ml-100k.inter'}: MovieLens-100K atomic files not found")
    with tempfile.TemporaryDirectory(prefix="vs_recbole-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        load0 = os.getloadavg()
        peak = matmul_peak(args.threads)
        print(f"[vs_recbole] fp32 matmul peak {peak:.1f} GFLOP/s on {args.threads} thread(s)", flush=True)
        ours = run_ours(args, work)
        finish_side(ours, peak)
        print(f"[vs_recbole] ours: {json.dumps({k: ours[k] for k in ('epoch_seconds', 'seconds_to_best', 'eval_seconds', 'ndcg@10')})}", flush=True)
        result: dict[str, Any] = {"ours": ours, "matmul_peak_gflops": peak, "threads": args.threads,
                                  "hyper_parameters": HP, "command": " ".join(["python", "benchmarks/vs_recbole.py", *sys.argv[1:]])}
        if args.recbole_from:
            rb = json.loads(args.recbole_from.read_text())["recbole"]
            when = rb.get("measured_at") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(args.recbole_from.stat().st_mtime))
            rb["reused_from"] = f"{args.recbole_from}: RecBole measured in an earlier run of this script (written {when})"
            result["recbole"] = rb
            result["speedup"] = speedups(ours, rb)
        elif not args.skip_recbole:
            try:
                rb = run_recbole(args, work)
                rb["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                rb["threads"] = args.threads
            except (subprocess.CalledProcessError, OSError, ValueError) as e:  # keep our side's numbers
                result["recbole"] = {"error": f"RecBole run failed: {e}"}
                result["load_avg_before_after"] = [load0, os.getloadavg()]
                if args.json:
                    from mosaicrec.utils import write_json

                    write_json(args.json, result)
                raise
            finish_side(rb, peak)
            rb["reference_not_measured_here"] = {
                "source": "shared/data/README.md (RecBole 1.2.1 to early stop, patience 8, seed 2020, 2 idle cores)",
                "best_epoch": 27, "seconds_to_best_about": 65 * 60, "ndcg@10": 0.067, "hr@10": 0.144}
            result["recbole"] = rb
            result["speedup"] = speedups(ours, rb)
            print(f"[vs_recbole] recbole: {json.dumps({k: rb[k] for k in ('epoch_seconds', 'seconds_to_best', 'eval_seconds', 'ndcg@10')})}", flush=True)
            print(f"[vs_recbole] speedup: {json.dumps(result['speedup'])}", flush=True)
        result["load_avg_before_after"] = [load0, os.getloadavg()]
        if args.json:
            from mosaicrec.utils import write_json

            write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
