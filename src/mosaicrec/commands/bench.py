"""``mosaicrec bench``: run a frozen benchmark ``benchmarks/NAME.yaml`` and check its numbers.

    mosaicrec bench --list
    mosaicrec bench ml1m_sasrec --json benchmarks/results/ml1m_sasrec.json --check
    mosaicrec bench afk_sasrec --seeds 1 2 3 train.epochs=5
    mosaicrec bench ml1m_sasrec --from-json benchmarks/results/ml1m_sasrec.json --check   (no training)
    mosaicrec bench ml1m_lirdrec --seeds 2025 --append --json benchmarks/results/ml1m_lirdrec.json
    mosaicrec bench scientific-cold_lirdrec --json R.json --cold-into benchmarks/results/scientific_lirdrec.json

A benchmark is an ExperimentConfig with ``seeds`` and ``expected`` ranges
(``overall.ndcg@10: [lo, hi]``, ``Food.mrr: [lo, hi]``, ``sampled.Food.hr@10: [lo, hi]`` for
the sampled-negative metrics). For each seed it trains (early stopping on validation) and
tests once; the JSON holds the means over seeds, their sample standard deviations (0 for one
seed) and every seed's numbers. ``--append`` adds this call's seeds to those already in the
``--json`` file (one seed per call, means over all). When the prepared data has a cold-item split
(``data.cold_item_fraction > 0``), every seed's run is also evaluated on the cold items
(:mod:`mosaicrec.models.cf.cold`) and the JSON gets ``metrics_cold`` (mean over seeds);
``--cold-into PATH`` stores that under ``metrics_cold`` of another results JSON as well (e.g. the
warm benchmark of the same model). Rewriting a JSON keeps a ``metrics_cold`` already there
unless this call computed one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "run a frozen benchmark (benchmarks/NAME.yaml): train + test per seed, JSON results, --check ranges"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="benchmark name (<dataset>_<model>) or a YAML path")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--json", help="write the results JSON here")
    p.add_argument("--check", action="store_true", help="exit 1 if a mean is outside the YAML's expected range")
    p.add_argument("--from-json", help="check/print an existing results JSON instead of training")
    p.add_argument("--seeds", type=int, nargs="+", help="override the YAML's seeds")
    p.add_argument("--bench-dir", help="folder of benchmark YAMLs (default ./benchmarks, else the repo's)")
    p.add_argument("--run-root", default="runs/bench", help="runs go to RUN_ROOT/NAME/seed-S")
    p.add_argument("--work-dir", default="work", help="cache of prepared data")
    p.add_argument("--progress", action="store_true", help="show training progress bars")
    p.add_argument("--resume", action="store_true",
                   help="continue each seed's run from its last.ckpt (e.g. with a lower train.epochs to stop now)")
    p.add_argument("--append", action="store_true",
                   help="add these seeds to the per-seed runs already in --json (means over all)")
    p.add_argument("--cold-into", help="also store the cold-item results (metrics_cold) in this results JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def bench_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    here = Path("benchmarks")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "benchmarks"


def bench_path(name: str, folder: Path) -> Path:
    if name.endswith((".yaml", ".yml")):
        return Path(name)
    path = folder / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "(none)"
        raise FileNotFoundError(f"{path}: no benchmark {name!r}; known: {known}")
    return path


def mean_std(values: list[dict[str, dict[str, float]]]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Per-group, per-metric mean and sample standard deviation (ddof=1; 0 for one value)."""
    import numpy as np

    mean: dict[str, dict[str, float]] = {}
    std: dict[str, dict[str, float]] = {}
    for group in values[0]:
        mean[group], std[group] = {}, {}
        for k in values[0][group]:
            arr = np.array([v[group][k] for v in values], dtype=float)
            mean[group][k] = float(arr.mean())
            std[group][k] = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return mean, std


def aggregate(per_seed: list[dict[str, Any]], cfg: Any) -> dict[str, Any]:
    import numpy as np

    from mosaicrec.utils import code_version

    out: dict[str, Any] = {"name": cfg.name, "seeds": [r["seed"] for r in per_seed]}
    out["metrics"], out["std"] = mean_std([r["test"] for r in per_seed])
    if all(r.get("test_sampled") for r in per_seed):
        out["metrics_sampled"], out["std_sampled"] = mean_std([r["test_sampled"] for r in per_seed])
    out["valid"], _ = mean_std([r["valid"] for r in per_seed])
    for key in ("train_seconds", "epochs", "epoch_seconds", "seconds_to_best", "eval_seconds", "best_epoch"):
        out[key] = float(np.mean([r[key] for r in per_seed]))
    out["per_seed"] = per_seed
    out["config"] = cfg.model_dump(mode="json")
    out["code_version"] = code_version()
    return out


def check(result: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Messages for every expected range the result's means fall outside of (or lack)."""
    failures = []
    for key, bounds in expected.items():
        parts = key.split(".")
        section = "metrics"
        if parts[0] == "sampled":
            section, parts = "metrics_sampled", parts[1:]
        group, metric = ".".join(parts[:-1]), parts[-1]
        value = result.get(section, {}).get(group, {}).get(metric)
        lo, hi = bounds
        if value is None:
            failures.append(f"{key}: missing from the results")
        elif not lo <= value <= hi:
            failures.append(f"{key}: {value:.4f} outside [{lo}, {hi}]")
    return failures


def dependency_run(name: str, overrides: list[str], seed: int, data_cfg: Any, args: argparse.Namespace) -> Path:
    """Run directory of benchmark ``name`` at ``seed``: reused when finished with the same config,
    else trained now. Models that read another run (Molar's ID model) get it through this."""
    from mosaicrec.config import ConfigError, load_experiment
    from mosaicrec.training.engine import train_experiment
    from mosaicrec.training.run import load_config
    from mosaicrec.utils import hash_obj

    path = bench_path(name, bench_dir(args.bench_dir))
    cfg = load_experiment(path, overrides)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
    if cfg.data.model_dump() != data_cfg.model_dump():
        raise ConfigError(f"{path}: its data section differs from the benchmark that needs it (same split required)")
    tag = name if not overrides else f"{name}@{hash_obj(sorted(overrides))[:8]}"
    run_dir = Path(args.run_root) / tag / f"seed-{seed}"
    if (run_dir / "model.safetensors").exists() and (run_dir / "metrics.json").exists():
        if load_config(run_dir).model_dump() != cfg.model_dump():
            raise ConfigError(f"{run_dir}: finished run of {name} has a different config; remove it to retrain")
        print(f"[bench] reusing {run_dir}", flush=True)
        return run_dir
    print(f"[bench] training dependency {name} {' '.join(overrides)} (seed {seed}) -> {run_dir}", flush=True)
    train_experiment(cfg, run_dir, Path(args.work_dir), progress=args.progress,
                     resume=(run_dir / "checkpoints" / "last.ckpt").exists())
    return run_dir


def run_seeds(cfg: Any, args: argparse.Namespace, name: str) -> list[dict[str, Any]]:
    from mosaicrec.registry import MODELS
    from mosaicrec.training.engine import train_experiment

    per_seed = []
    hook = getattr(MODELS.get(cfg.model["name"]), "prepare_bench", None)
    for seed in args.seeds or cfg.seeds:
        cfg_s = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        if callable(hook):  # e.g. Molar: train or reuse the ID model it aligns with
            cfg_s = hook(cfg_s, lambda dep, ov, s=seed: dependency_run(dep, ov, s, cfg.data, args))
        run_dir = Path(args.run_root) / name / f"seed-{seed}"
        print(f"[bench {name}] seed {seed} -> {run_dir}", flush=True)
        res = train_experiment(cfg_s, run_dir, Path(args.work_dir), progress=args.progress,
                               resume=args.resume and (run_dir / "checkpoints" / "last.ckpt").exists())
        per_seed.append({"seed": seed, "run_dir": str(run_dir), "test": res.test, "test_sampled": res.test_sampled,
                         "valid": res.valid, "best_epoch": res.best_epoch, "epochs": res.epochs,
                         "train_seconds": res.train_seconds, "epoch_seconds": res.epoch_seconds,
                         "seconds_to_best": res.seconds_to_best, "eval_seconds": res.eval_seconds})
        print(f"[bench {name}] seed {seed}: test overall {res.test['overall'] if res.test else None}", flush=True)
    return per_seed


def finish_result(per_seed: list[dict[str, Any]], cfg: Any, args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Cold-item evaluation of the new seeds (data with cold items only), ``--append``, aggregate."""
    from mosaicrec.models.cf.cold import cold_report_for_run, summarise_cold
    from mosaicrec.utils import read_json

    for r in per_seed:
        cold = cold_report_for_run(r["run_dir"], cfg.eval.ks)
        if cold is not None:
            r["cold"] = cold
    old = read_json(args.json) if args.json and Path(args.json).exists() else {}
    if args.append:
        if not args.json:
            raise ValueError("--append needs --json (the results file to add the seeds to)")
        new = {r["seed"] for r in per_seed}
        per_seed = [r for r in old.get("per_seed", []) if r["seed"] not in new] + per_seed
    result = aggregate(per_seed, cfg)
    colds = [r["cold"] for r in per_seed if r.get("cold")]
    if colds:
        result["metrics_cold"] = summarise_cold(colds, name)
    elif "metrics_cold" in old:
        result["metrics_cold"] = old["metrics_cold"]  # written by a cold-split benchmark (--cold-into)
    return result


def run(args: argparse.Namespace) -> int:
    from mosaicrec.commands._tables import print_metrics
    from mosaicrec.config import load_experiment
    from mosaicrec.utils import file_lock, read_json, write_json

    folder = bench_dir(args.bench_dir)
    if args.list:
        for p in sorted(folder.glob("*.yaml")):
            print(p.stem)
        return 0
    if not args.name:
        raise ValueError("give a benchmark NAME (see `mosaicrec bench --list`)")
    path = bench_path(args.name, folder)
    cfg = load_experiment(path, args.overrides)
    if args.from_json:
        result = read_json(args.from_json)
    else:
        per_seed = run_seeds(cfg, args, path.stem)
        # seeds of one benchmark run in parallel (--append) read-modify-write the same JSON
        with file_lock(Path(args.json).parent / f".{Path(args.json).name}.lock" if args.json else None):
            result = finish_result(per_seed, cfg, args, path.stem)
            if args.json:
                write_json(args.json, result)
        if args.cold_into and "metrics_cold" in result:
            from mosaicrec.commands.cold import merge_json

            merge_json(args.cold_into, "metrics_cold", result["metrics_cold"])
    n = len(result.get("seeds", []))
    print_metrics(result["metrics"], f"{path.stem}: test, full ranking (mean of {n} seeds)", result.get("std"))
    print_metrics(result.get("metrics_sampled"), f"{path.stem}: test, sampled negatives", result.get("std_sampled"))
    print(f"epochs {result['epochs']:.1f}, {result['epoch_seconds']:.1f} s/epoch, "
          f"training {result['train_seconds']:.0f} s")
    if args.check:
        failures = check(result, cfg.expected)
        for f in failures:
            print(f"CHECK FAILED {f}", file=sys.stderr)
        if failures:
            return 1
        print(f"check passed ({len(cfg.expected)} ranges)")
    return 0
