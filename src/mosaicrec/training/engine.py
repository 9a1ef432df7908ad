"""``train_experiment``: prepare -> train with validation -> best weights -> one test evaluation.

Model and epoch selection read only the ``valid`` split. With ``evaluate_test=False`` (tuning)
the test Evaluator is never constructed. Under DDP every rank trains; only rank 0 writes the
final files.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosaicrec.config import ConfigError, ExperimentConfig, dump_yaml
from mosaicrec.data.schema import PreparedData
from mosaicrec.training.run import build_model, load_config, resolve_data
from mosaicrec.utils import atomic_path, code_version, write_json


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    valid: dict[str, dict[str, float]]
    test: dict[str, dict[str, float]] | None
    test_sampled: dict[str, dict[str, float]] | None = None
    epochs: int = 0
    train_seconds: float = 0.0
    epoch_seconds: float = 0.0
    seconds_to_best: float = 0.0
    eval_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.train_seconds + (self.eval_seconds or 0.0)


def write_run_header(cfg: ExperimentConfig, run_dir: Path, data: PreparedData, work_dir: Path,
                     resume: bool) -> None:
    """config.yaml and data.json, before training; on resume the config must be unchanged."""
    cfg_path = run_dir / "config.yaml"
    if resume and cfg_path.exists():
        old = load_config(run_dir)
        # `expected` (bench --check ranges) does not affect training.
        same = {"train": {"epochs"}, "expected": True}
        if old.model_dump(exclude=same) != cfg.model_dump(exclude=same):  # type: ignore[arg-type]
            raise ConfigError(f"{cfg_path}: --resume with a different config (only train.epochs and expected may change)")
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cfg_path) as tmp:
        tmp.write_text(dump_yaml(cfg))
    write_json(run_dir / "data.json", {"path": str(data.root.resolve()), "content_hash": data.meta.get("content_hash"),
                                       "work_dir": str(work_dir.resolve())})


def _trainer(cfg: ExperimentConfig, run_dir: Path, callbacks: Sequence[Any], progress: bool) -> Any:
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from mosaicrec.training.csvlog import ResumableCSVLogger

    monitor = f"val/{cfg.train.monitor}"
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="max",
                           save_top_k=1, save_on_train_epoch_end=True,
                           enable_version_counter=False, auto_insert_metric_name=False)
    # Lightning's save_last only refreshes last.ckpt when a new best was saved; resume needs every epoch.
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           save_on_train_epoch_end=True, enable_version_counter=False)
    stop = EarlyStopping(monitor=monitor, mode="max", patience=cfg.train.patience,
                         check_on_train_epoch_end=True, strict=False)
    t = cfg.train
    return L.Trainer(
        max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]  # validated by Lightning
        gradient_clip_val=t.grad_clip, logger=ResumableCSVLogger(run_dir),
        callbacks=[ckpt, last, stop, *callbacks], enable_progress_bar=progress, enable_model_summary=False,
        default_root_dir=run_dir, log_every_n_steps=10, num_sanity_val_steps=0,
        use_distributed_sampler=False,  # ours honours train.shuffle (Lightning's always shuffles)
    ), ckpt


def train_experiment(cfg: ExperimentConfig, run_dir: Path, work_dir: Path, resume: bool = False,
                     callbacks: Sequence[Any] = (), evaluate_test: bool = True,
                     progress: bool = True) -> TrainResult:
    import lightning as L

    from mosaicrec.evaluation.ranking import Evaluator
    from mosaicrec.training.data import WindowDataset, build_windows
    from mosaicrec.training.module import RecModule

    run_dir, work_dir = Path(run_dir), Path(work_dir)
    data = PreparedData.load(resolve_data(cfg.data, work_dir))
    write_run_header(cfg, run_dir, data, work_dir, resume)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    model = build_model(cfg, data, work_dir)
    # CF models (kind "cf") provide their own dataset: one row per training interaction.
    make_ds = getattr(model, "train_dataset", None)
    select = getattr(model, "select_windows", None)  # optional history cap of the model
    if callable(make_ds):
        ds = make_ds()
    else:
        windows = build_windows(data, cfg.train.max_len)
        ds = WindowDataset(select(windows) if callable(select) else windows)
    if len(ds) == 0:
        raise ValueError(f"{data.root}: no training targets (no user has two train/context rows)")
    valid = Evaluator(data, cfg.eval.model_copy(update={"mode": "full"}), "valid", cfg.train.max_len,
                      max_queries=cfg.train.val_users)
    module = RecModule(model, cfg.train, valid)
    trainer, ckpt = _trainer(cfg, run_dir, callbacks, progress)
    loader = _loader(ds, cfg, trainer.world_size, trainer.global_rank)
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.fit(module, train_dataloaders=loader, ckpt_path=str(last) if resume and last.exists() else None)
    if not trainer.is_global_zero:
        return TrainResult(run_dir=run_dir, best_epoch=-1, valid={}, test=None)
    return _finish(cfg, run_dir, data, module, ckpt, evaluate_test)


def _loader(ds: Any, cfg: ExperimentConfig, world_size: int, rank: int) -> Any:
    """Batches of windows; under DDP each rank reads its interleaved share (batch_size per rank)."""
    from torch.utils.data import DataLoader, DistributedSampler

    t = cfg.train
    sampler: DistributedSampler[int] | None = (DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=t.shuffle, seed=t.seed)
               if world_size > 1 else None)
    return DataLoader(ds, batch_size=t.batch_size, shuffle=t.shuffle if sampler is None else None, sampler=sampler,
                      collate_fn=ds.collate, num_workers=t.num_workers, persistent_workers=t.num_workers > 0)


def _load_best(module: Any, ckpt: Any) -> None:
    import torch

    best = ckpt.best_model_path
    if not best:
        raise RuntimeError(f"no best checkpoint was saved (monitor val/{module.tcfg.monitor} never logged)")
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)


def _finish(cfg: ExperimentConfig, run_dir: Path, data: PreparedData, module: Any, ckpt: Any,
            evaluate_test: bool) -> TrainResult:
    from mosaicrec.training.weights import save_weights

    _load_best(module, ckpt)
    model = module.model.cpu().eval()
    save_weights(model, run_dir / "model.safetensors")
    write_json(run_dir / "model.json", {
        "model": cfg.model["name"], "config": cfg.model_config_obj().model_dump(mode="json"),
        "n_items": data.n_items, "max_len": cfg.train.max_len, "data_hash": data.meta.get("content_hash"),
        "code_version": code_version()})
    best = module.best_epoch()
    timing = module.timing
    epochs = len(timing)
    train_s = sum(t["train"] + t["val"] for t in timing.values())
    res = TrainResult(run_dir=run_dir, best_epoch=best, valid=module.history[best], test=None, epochs=epochs,
                      train_seconds=train_s, epoch_seconds=sum(t["train"] for t in timing.values()) / max(epochs, 1),
                      seconds_to_best=sum(t["train"] + t["val"] for e, t in timing.items() if e <= best),
                      extra={"per_epoch": [{"epoch": e, **t, "valid": module.history.get(e, {}).get("overall")}
                                           for e, t in sorted(timing.items())]})
    if evaluate_test:
        _test(cfg, run_dir, data, model, res)
    write_json(run_dir / "metrics.json", {
        "valid": res.valid, "test": res.test, **({"test_sampled": res.test_sampled} if res.test_sampled else {}),
        "best_epoch": res.best_epoch, "epochs": res.epochs, "train_seconds": res.train_seconds,
        "epoch_seconds": res.epoch_seconds, "seconds_to_best": res.seconds_to_best,
        "eval_seconds": res.eval_seconds,
        "val_seconds": sum(t["val"] for t in timing.values()) / max(sum(t["val"] > 0 for t in timing.values()), 1)})
    return res


def _test(cfg: ExperimentConfig, run_dir: Path, data: PreparedData, model: Any, res: TrainResult) -> None:
    """The single test evaluation of the best model."""
    from mosaicrec.evaluation.ranking import Evaluator
    from mosaicrec.utils import default_device

    device = default_device() if cfg.train.accelerator in ("auto", "gpu", "cuda") else "cpu"
    t0 = time.perf_counter()
    result = Evaluator(data, cfg.eval, "test", cfg.train.max_len).evaluate(model.to(device), device=device)
    model.cpu()
    res.eval_seconds = time.perf_counter() - t0
    res.test, res.test_sampled = result.metrics, result.metrics_sampled
    with atomic_path(run_dir / "per_query.parquet") as tmp:
        result.per_query.write_parquet(tmp)
