"""End to end: a CF model through the training engine (pair dataset, set queries) and the
``mosaicrec cold`` command on its run directory."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from tests.integration.toydata import write_prepared

from mosaicrec.cli import main
from mosaicrec.config import ExperimentConfig


def cold_toy(root, n_users=40, n_items=30, cold=(29, 30), seed=0):
    """Users in two taste groups; cold items appear only as valid/test rows."""
    rng = np.random.default_rng(seed)
    seqs, splits = [], []
    for u in range(n_users):
        group = np.arange(1, 16) if u % 2 else np.arange(16, 29)
        items = [int(i) for i in rng.choice(group, size=6, replace=False)]
        tail = [int(rng.choice(cold))] if u % 3 == 0 else [int(rng.choice(group))]
        seqs.append(items + tail)
        splits.append(["train"] * 5 + ["valid", "test"])
    write_prepared(root, seqs, splits, n_items)
    pl.DataFrame({"item_idx": pl.Series(list(cold), dtype=pl.Int32)}).write_parquet(root / "cold_items.parquet")
    return root


def test_lightgcn_trains_through_the_engine_and_cold_command(tmp_path, capsys):
    from mosaicrec.training.engine import train_experiment

    data = cold_toy(tmp_path / "toy")
    cfg = ExperimentConfig(
        name="toy_lightgcn", data={"source": "prepared", "path": str(data)},
        model={"name": "lightgcn", "dim": 8},
        train={"epochs": 3, "batch_size": 32, "lr": 0.05, "monitor": "recall@10", "accelerator": "cpu",
               "patience": 3},
        eval={"ks": [5, 10], "query": "set", "mask_seen": True})
    res = train_experiment(cfg, tmp_path / "run", tmp_path / "work", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert res.epochs == 3 and 0.0 <= metrics["test"]["overall"]["recall@10"] <= 1.0
    assert {"precision@10", "map@10", "ndcg@10"} <= set(metrics["test"]["overall"])
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"metrics": {"overall": {}}}))
    assert main(["cold", str(tmp_path / "run"), "--json", str(out), "--ks", "1", "2"]) == 0
    doc = json.loads(out.read_text())
    cold = doc["metrics_cold"]
    assert cold["n_cold_items"] == 2 and cold["n_queries"] > 0 and "metrics" in doc
    assert 0.0 <= cold["model"]["recall@1"] <= 1.0 and cold["model"]["recall@2"] == 1.0  # 2 candidates
    assert "content_knn" not in cold  # lightgcn has no features


def test_bench_appends_seeds_and_evaluates_cold_items(tmp_path, capsys):
    """`mosaicrec bench` on data with a cold-item split: metrics_cold per seed and averaged,
    --append adds a seed to the JSON, --cold-into copies metrics_cold into another JSON whose
    other keys are kept (and a later plain rewrite of that JSON keeps it)."""
    import yaml

    data = cold_toy(tmp_path / "toy")
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    exp = {"name": "toy-cold_lightgcn", "data": {"source": "prepared", "path": str(data)},
           "model": {"name": "lightgcn", "dim": 8},
           "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "monitor": "recall@2", "accelerator": "cpu"},
           "eval": {"ks": [1, 2], "query": "set", "mask_seen": True}, "seeds": [1, 2]}
    (bench / "toy-cold_lightgcn.yaml").write_text(yaml.safe_dump(exp))
    common = ["--bench-dir", str(bench), "--run-root", str(tmp_path / "runs"), "--work-dir", str(tmp_path / "work")]
    out, warm = tmp_path / "cold.json", tmp_path / "warm.json"
    warm.write_text(json.dumps({"metrics": {"overall": {"recall@2": 0.5}}}))
    assert main(["bench", "toy-cold_lightgcn", "--seeds", "1", "--json", str(out), *common]) == 0
    first = json.loads(out.read_text())
    assert first["seeds"] == [1] and first["metrics_cold"]["n_seeds"] == 1
    assert first["per_seed"][0]["cold"]["model"]["recall@2"] == 1.0  # 2 cold candidates
    assert main(["bench", "toy-cold_lightgcn", "--seeds", "2", "--append", "--json", str(out),
                 "--cold-into", str(warm), *common]) == 0
    res = json.loads(out.read_text())
    assert res["seeds"] == [1, 2] and len(res["per_seed"]) == 2
    r1 = [r["cold"]["model"]["recall@1"] for r in res["per_seed"]]
    assert res["metrics_cold"]["model"]["recall@1"] == pytest.approx(np.mean(r1))
    assert res["metrics_cold"]["n_seeds"] == 2 and "model_std" in res["metrics_cold"]
    pop = res["per_seed"][0]["cold"]["popularity"]
    assert res["metrics_cold"]["popularity"] == pytest.approx(pop)  # data-only baseline: same every seed
    t1 = [r["test"]["overall"]["recall@2"] for r in res["per_seed"]]
    assert res["metrics"]["overall"]["recall@2"] == pytest.approx(np.mean(t1))
    doc = json.loads(warm.read_text())
    assert doc["metrics"]["overall"]["recall@2"] == 0.5 and doc["metrics_cold"] == res["metrics_cold"]
    # The warm benchmark (same data without the cold split) rewrites warm.json: metrics_cold stays.
    shutil.copytree(data, tmp_path / "warm_data")
    (tmp_path / "warm_data" / "cold_items.parquet").unlink()
    exp.update(name="toy_lightgcn", data={"source": "prepared", "path": str(tmp_path / "warm_data")})
    (bench / "toy_lightgcn.yaml").write_text(yaml.safe_dump(exp))
    assert main(["bench", "toy_lightgcn", "--seeds", "1", "--json", str(warm), *common]) == 0
    doc = json.loads(warm.read_text())
    assert doc["metrics_cold"] == res["metrics_cold"] and doc["seeds"] == [1]
    assert "cold" not in doc["per_seed"][0]
    with pytest.raises(ValueError, match="--append needs --json"):
        main(["bench", "toy_lightgcn", "--seeds", "1", "--append", "--debug", *common])
