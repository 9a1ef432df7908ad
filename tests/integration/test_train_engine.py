"""train_experiment end to end on a tiny learnable dataset (seconds)."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch
from tests.integration.toydata import random_loo_dataset

from mosaicrec.config import ExperimentConfig
from mosaicrec.training.engine import train_experiment
from mosaicrec.training.run import load_run


def toy_cfg(data_dir, **train) -> ExperimentConfig:
    return ExperimentConfig(
        name="toy", data={"source": "prepared", "path": str(data_dir)},
        model={"name": "sasrec", "hidden": 16, "layers": 1, "heads": 1, "dropout": 0.0},
        train={"epochs": 15, "batch_size": 16, "lr": 1e-2, "max_len": 10, "patience": 10,
               "accelerator": "cpu", **train},
        eval={"ks": [1, 5, 10], "mode": "both", "n_negatives": 10})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    data_dir = random_loo_dataset(root / "data", two_domains=True)
    cfg = toy_cfg(data_dir)
    res = train_experiment(cfg, root / "run", root / "work", progress=False)
    return cfg, res, root


def test_run_directory_layout_and_metrics(trained):
    cfg, res, root = trained
    run = root / "run"
    for name in ("config.yaml", "model.safetensors", "model.json", "metrics.csv", "metrics.json",
                 "per_query.parquet", "data.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run / name).exists(), name
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["test"]) == {"overall", "A", "B"}
    assert set(m["test_sampled"]) == {"overall", "A", "B"}
    assert m["epochs"] == 15 and 0 <= m["best_epoch"] < 15
    csv = pl.read_csv(run / "metrics.csv")
    assert {"train/loss", "val/ndcg@10", "epoch_seconds", "epoch"} <= set(csv.columns)
    per_epoch = csv.filter(pl.col("val/ndcg@10").is_not_null())
    assert per_epoch.height == 15
    assert per_epoch["val/ndcg@10"].max() == pytest.approx(m["valid"]["overall"]["ndcg@10"])
    pq = pl.read_parquet(run / "per_query.parquet")
    assert pq.height == 60  # one test query per user


def test_training_learns_beyond_chance(trained):
    _, res, _ = trained
    # 40 items, 20 per domain: a random ranking has HR@10 about 0.5 within the domain and
    # HR@1 about 0.05; the users follow a cycle so a trained model does much better at HR@1.
    assert res.test["overall"]["hr@1"] > 0.3


def test_load_run_reproduces_the_test_scores(trained):
    from mosaicrec.evaluation.ranking import Evaluator

    cfg, res, root = trained
    loaded = load_run(root / "run")
    assert not loaded.model.training
    again = Evaluator(loaded.data, cfg.eval, "test", cfg.train.max_len).evaluate(loaded.model)
    assert again.metrics["overall"] == pytest.approx(res.test["overall"])


def test_resume_continues_from_last_checkpoint(tmp_path):
    data_dir = random_loo_dataset(tmp_path / "data", n_users=20)
    run = tmp_path / "run"
    train_experiment(toy_cfg(data_dir, epochs=3), run, tmp_path / "work", progress=False)
    res = train_experiment(toy_cfg(data_dir, epochs=5), run, tmp_path / "work", resume=True, progress=False)
    assert res.epochs == 5  # 3 restored + 2 new epochs
    csv = pl.read_csv(run / "metrics.csv").filter(pl.col("val/ndcg@10").is_not_null())
    assert csv["epoch"].to_list() == [0, 1, 2, 3, 4]  # one file with every epoch
    assert res.valid["overall"]["ndcg@10"] == pytest.approx(csv["val/ndcg@10"].max())
    assert csv["val/ndcg@10"].to_list().index(csv["val/ndcg@10"].max()) == res.best_epoch


def test_resume_refuses_a_changed_config(trained, tmp_path):
    cfg, _, root = trained
    import shutil

    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    changed = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": 1.0})})
    with pytest.raises(ValueError, match="different config"):
        train_experiment(changed, run, root / "work", resume=True, progress=False)


def test_tuning_mode_never_builds_a_test_evaluator(tmp_path, monkeypatch):
    from mosaicrec.evaluation import ranking

    built = []
    orig = ranking.Evaluator.__init__

    def spy(self, data, cfg, split, *a, **k):
        built.append(split)
        orig(self, data, cfg, split, *a, **k)

    monkeypatch.setattr(ranking.Evaluator, "__init__", spy)
    data_dir = random_loo_dataset(tmp_path / "data", n_users=20)
    res = train_experiment(toy_cfg(data_dir, epochs=1), tmp_path / "run", tmp_path / "work",
                           evaluate_test=False, progress=False)
    assert built == ["valid"] and res.test is None
    assert not (tmp_path / "run" / "per_query.parquet").exists()
    assert torch.isfinite(torch.tensor(res.valid["overall"]["ndcg@10"]))


def test_load_run_names_missing_or_mismatched_files(trained, tmp_path):
    import shutil

    from mosaicrec.data.schema import DataError

    _, _, root = trained
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="model.json"):
        load_run(run)
    shutil.copy(root / "run" / "model.json", run / "model.json")
    info = json.loads((run / "data.json").read_text())
    (run / "data.json").write_text(json.dumps({**info, "content_hash": "something-else"}))
    with pytest.raises(DataError, match="content_hash"):
        load_run(run)
    (run / "config.yaml").unlink()
    with pytest.raises(ValueError, match="config.yaml"):
        load_run(run)


@pytest.mark.parametrize("fused", [True, False])
def test_fused_and_per_tensor_adamw_with_gradient_clipping(tmp_path, fused):
    # the fused AdamW kernel is the default; both implementations train through the engine (also
    # with Lightning's gradient clipping), and their updates agree to float rounding
    import copy

    from mosaicrec.config import TrainConfig
    from mosaicrec.training.module import RecModule

    data_dir = random_loo_dataset(tmp_path / "data", two_domains=True)
    cfg = toy_cfg(data_dir, epochs=1, grad_clip=1.0, fused_optimizer=fused, shuffle=False)
    res = train_experiment(cfg, tmp_path / "run", tmp_path / "work", progress=False)
    model = load_run(tmp_path / "run").model
    assert res.epochs == 1 and TrainConfig().fused_optimizer  # fused is the default
    opt = RecModule(model, cfg.train, None).configure_optimizers()  # what the engine trained with
    assert bool(opt.defaults["fused"]) is fused

    other = copy.deepcopy(model)
    opts = [RecModule(m, cfg.train.model_copy(update={"fused_optimizer": f}), None).configure_optimizers()
            for m, f in ((model, fused), (other, not fused))]
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):  # the same gradients into both
        for p, q in zip(model.parameters(), other.parameters(), strict=True):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        for o in opts:
            o.step()
    a = torch.cat([p.detach().flatten() for p in model.parameters()])
    b = torch.cat([p.detach().flatten() for p in other.parameters()])
    assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
