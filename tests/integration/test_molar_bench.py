"""Molar end to end through `mosaicrec bench`: the ID model is trained first (or reused), the
aligned Molar run is saved and reloaded (safetensors) with the same test scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests.integration.toydata import random_loo_dataset

from mosaicrec.cli import main

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 256}


def write_benches(root: Path, data_dir: Path) -> Path:
    folder = root / "benchmarks"
    folder.mkdir()
    data = {"source": "prepared", "path": str(data_dir)}
    train = {"batch_size": 16, "lr": 0.01, "max_len": 8, "patience": 5, "accelerator": "cpu"}
    ev = {"ks": [5, 10], "mode": "full"}
    sasrec = {"name": "toy_sasrec", "data": data, "model": {"name": "sasrec", "hidden": 16, "layers": 1},
              "train": {**train, "epochs": 2}, "eval": ev, "seeds": [7]}
    molar = {"name": "toy_molar", "data": data,
             "model": {"name": "molar", "backbone": {"random_init": TINY}, "bf16": False, "n_negatives": 8,
                       "item_encoder": {"cache": False}, "user_encoder": {"layers": 1}, "windows_per_user": 1,
                       "align": {"alpha": 0.5, "tau": 0.2, "id_bench": "toy_sasrec", "id_overrides": ["train.epochs=1"]}},
             "train": {**train, "epochs": 2, "lr": 0.003}, "eval": ev, "seeds": [7]}
    for cfg in (sasrec, molar):
        (folder / f"{cfg['name']}.yaml").write_text(yaml.safe_dump(cfg))
    return folder


@pytest.fixture(scope="module")
def benched(tmp_path_factory):
    root = tmp_path_factory.mktemp("molar_bench")
    data_dir = random_loo_dataset(root / "data", n_users=40, n_items=30)
    folder = write_benches(root, data_dir)
    args = ["bench", "toy_molar", "--bench-dir", str(folder), "--run-root", str(root / "runs"),
            "--work-dir", str(root / "work"), "--json", str(root / "toy_molar.json")]
    assert main(args) == 0
    return root, args


def test_bench_trains_the_id_model_first_and_aligns_with_it(benched):
    root, _ = benched
    dep = next((root / "runs").glob("toy_sasrec@*/seed-7"))
    assert (dep / "model.safetensors").exists()
    run = root / "runs" / "toy_molar" / "seed-7"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["align"]["id_run"] == str(dep)
    dep_cfg = yaml.safe_load((dep / "config.yaml").read_text())
    assert dep_cfg["train"]["epochs"] == 1 and dep_cfg["train"]["seed"] == 7  # the override and the seed
    result = json.loads((root / "toy_molar.json").read_text())
    assert 0 <= result["metrics"]["overall"]["ndcg@10"] <= 1


def test_saved_molar_run_reloads_with_identical_test_metrics(benched):
    from mosaicrec.config import EvalConfig
    from mosaicrec.evaluation.ranking import Evaluator
    from mosaicrec.training.run import load_run

    root, _ = benched
    run = root / "runs" / "toy_molar" / "seed-7"
    loaded = load_run(run)
    assert loaded.model.cfg.align.id_run is not None and bool(loaded.model.item_stats_ready)
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    again = Evaluator(loaded.data, EvalConfig(ks=[5, 10], mode="full"), "test", 8).evaluate(loaded.model)
    for k, v in metrics["overall"].items():
        assert again.metrics["overall"][k] == pytest.approx(v, abs=1e-9), k


def test_second_bench_reuses_the_id_run(benched, capsys):
    root, args = benched
    dep = next((root / "runs").glob("toy_sasrec@*/seed-7"))
    stamp = (dep / "model.safetensors").stat().st_mtime_ns
    assert main([*args[:-2], "train.epochs=1"]) == 0
    assert "reusing" in capsys.readouterr().out
    assert (dep / "model.safetensors").stat().st_mtime_ns == stamp
