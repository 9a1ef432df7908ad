"""Optuna search over an experiment's ``tune:`` space, scored on validation only.

* Each trial is one ``train_experiment(..., evaluate_test=False)`` run in
  ``<out>/trial-NNNN`` (the test Evaluator is never constructed); the objective is the best
  epoch's validation metric.
* :class:`ValidationPruning` reports every validated epoch to the trial and prunes the trial
  when the pruner says so (median of earlier trials at the same epoch).
* The study lives in an RDB storage (``sqlite:///study.db``) opened with ``load_if_exists``,
  so a killed search resumes and several processes can share one study. Trials record a
  heartbeat; a trial whose process died (no heartbeat for two intervals) is marked FAIL by the
  next trial start of any worker and re-queued once with the same parameters
  (:class:`RetryStaleOnce`). ``n_trials`` counts finished (complete
  or pruned) trials of the whole study, over all processes and restarts.
* The sampler is seeded with ``tune.seed`` for a fresh study; a process joining a study that
  already has trials gets a seed mixed with its pid, so concurrent workers do not propose
  the same values.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback  # a core dependency; this module is imported lazily

from mosaicrec.config import ConfigError, ExperimentConfig
from mosaicrec.tuning.space import TuneConfig, apply_params, default_params, parse_tune, suggest
from mosaicrec.utils import file_lock, write_json

_log = logging.getLogger(__name__)


class ValidationPruning(Callback):
    """Report each validated epoch's objective to an Optuna trial; prune when told to.

    The training module validates inside its own ``on_train_epoch_end`` (which Lightning calls
    after the non-monitoring callbacks), so the value of epoch ``e`` is reported at the start
    of epoch ``e + 1`` (before any more training) and at the end of training. Values come from
    the module's ``history`` (epoch -> {scope: {metric: value}}) when it has one, else from
    the logged ``val/<metric>`` (overall scope only).
    """

    def __init__(self, trial: Any, scope: str, metric: str) -> None:
        self.trial, self.scope, self.metric = trial, scope, metric
        self.reported: dict[int, float] = {}

    def _values(self, trainer: Any, pl_module: Any) -> dict[int, float]:
        history = getattr(pl_module, "history", None)
        if isinstance(history, dict):
            return {int(ep): float(m[self.scope][self.metric]) for ep, m in history.items()
                    if self.metric in m.get(self.scope, {})}
        value = trainer.callback_metrics.get(f"val/{self.metric}") if self.scope == "overall" else None
        return {} if value is None else {int(trainer.current_epoch) - 1: float(value)}

    def _report(self, trainer: Any, pl_module: Any) -> bool:
        new = False
        for ep, value in sorted(self._values(trainer, pl_module).items()):
            if ep not in self.reported and ep >= 0:
                self.trial.report(value, step=ep)
                self.reported[ep] = value
                new = True
        return new

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        import optuna

        if self._report(trainer, pl_module) and self.trial.should_prune():
            ep = max(self.reported)
            raise optuna.TrialPruned(f"pruned after epoch {ep}: valid {self.scope}.{self.metric} = "
                                     f"{self.reported[ep]:.4f}")

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._report(trainer, pl_module)


@dataclass
class TuneResult:
    study_name: str
    storage: str
    n_complete: int
    n_pruned: int
    n_failed: int
    best_number: int
    best_value: float
    best_params: dict[str, Any]
    default_value: float | None
    frozen: list[Path]


class RetryStaleOnce:
    """Re-queue a trial whose worker died, once, even if several workers find it stale at once.

    Optuna's stale-trial check can run in two workers at the same moment and both may fail the
    same trial; without this guard each would queue a retry. The check for an existing retry
    and the enqueue happen under a file lock beside the SQLite database (other storages: the
    check alone, which narrows but does not close that window). A retry that dies is not
    retried again.
    """

    def __init__(self, lock_path: Path | None) -> None:
        self.lock_path = lock_path

    def __call__(self, study: Any, trial: Any) -> None:
        import warnings

        import optuna
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        if trial.system_attrs.get("failed_trial") is not None:
            return
        with file_lock(self.lock_path):
            if any(t.system_attrs.get("failed_trial") == trial.number for t in study.get_trials(deepcopy=False)):
                return
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                RetryHeartbeatStaleTrialCallback(max_retry=1)(study, trial)


def _sqlite_file(url: str) -> Path | None:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:"):
        return None
    return Path(url[len(prefix):])


def make_storage(url: str, heartbeat: int) -> Any:
    import warnings

    import optuna

    db = _sqlite_file(url)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=RetryStaleOnce(db.with_name(db.name + ".retry.lock") if db else None))


def open_study(tune: TuneConfig, storage: Any, name: str) -> Any:
    import optuna

    pruner = (optuna.pruners.MedianPruner(n_startup_trials=tune.pruner_startup_trials,
                                          n_warmup_steps=tune.pruner_warmup_epochs)
              if tune.pruner == "median" else optuna.pruners.NopPruner())
    study = optuna.create_study(storage=storage, study_name=name, direction=tune.direction,
                                load_if_exists=True, pruner=pruner)
    n_existing = len(study.get_trials(deepcopy=False))
    seed = tune.seed if n_existing == 0 else hash((tune.seed, os.getpid(), n_existing)) % 2**31
    study.sampler = (optuna.samplers.TPESampler(seed=seed) if tune.sampler == "tpe"
                     else optuna.samplers.RandomSampler(seed=seed))
    return study


def finished_count(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def make_objective(cfg: ExperimentConfig, tune: TuneConfig, out_dir: Path, work_dir: Path) -> Callable[[Any], float]:
    from mosaicrec.training.engine import train_experiment

    raw = cfg.model_dump(mode="json")
    scope, metric = tune.scope_metric(cfg.train.monitor)

    def objective(trial: Any) -> float:
        params = suggest(trial, tune.params)
        trial_cfg = apply_params(raw, params)
        run_dir = out_dir / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("pid", os.getpid())
        res = train_experiment(trial_cfg, run_dir, work_dir, callbacks=[ValidationPruning(trial, scope, metric)],
                               evaluate_test=False, progress=False)
        values = res.valid.get(scope, {})
        if metric not in values:
            raise ConfigError(f"tune.metric {scope}.{metric}: not a validation metric; "
                              f"scopes {sorted(res.valid)}, metrics {sorted(values)}")
        trial.set_user_attr("best_epoch", res.best_epoch)
        trial.set_user_attr("valid", {k: float(v) for k, v in values.items()})
        return float(values[metric])

    return objective


def trials_summary(study: Any) -> list[dict[str, Any]]:
    return [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "default": bool(t.user_attrs.get("default")), "run_dir": t.user_attrs.get("run_dir"),
             "pid": t.user_attrs.get("pid"), "retry_of": t.system_attrs.get("failed_trial"),
             "intermediate": {str(k): v for k, v in t.intermediate_values.items()}}
            for t in study.get_trials(deepcopy=False)]


def run_tune(cfg: ExperimentConfig, out_dir: Path, work_dir: Path, storage_url: str | None = None,
             study_name: str | None = None, n_trials: int | None = None, heartbeat: int = 60,
             frozen_paths: list[Path] | None = None, frozen_name: str | None = None,
             source: str = "experiment") -> TuneResult:
    """Run (or resume) the study until it holds ``n_trials`` finished trials; freeze the best."""
    import optuna

    tune = parse_tune(cfg, source)
    if n_trials is not None:
        tune = tune.model_copy(update={"n_trials": n_trials})
    out_dir.mkdir(parents=True, exist_ok=True)
    storage_url = storage_url or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    study = open_study(tune, make_storage(storage_url, heartbeat), study_name or cfg.name)
    default = default_params(cfg, tune)
    if tune.include_default and default is not None:
        study.enqueue_trial(default, user_attrs={"default": True}, skip_if_exists=True)
    summary_path = out_dir / "trials.json"
    objective = make_objective(cfg, tune, out_dir, work_dir)
    callbacks = [optuna.study.MaxTrialsCallback(tune.n_trials, states=(
        optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)),
        lambda st, _t: write_json(summary_path, trials_summary(st))]
    deadline = None if tune.timeout is None else time.monotonic() + tune.timeout
    while (remaining := tune.n_trials - finished_count(study)) > 0:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        try:
            study.optimize(objective, n_trials=remaining, timeout=left, callbacks=callbacks)
            break
        except ValueError as e:
            if not str(e).startswith("Cannot tell a FAIL trial"):
                raise
            # Another worker saw no heartbeat from this process's trial (a stall longer than two
            # intervals) and failed it; its retry is queued. Drop this result and go on.
            _log.warning("a trial of this process was failed as stale by another worker; its retry is queued")
    write_json(summary_path, trials_summary(study))
    return _result(study, cfg, storage_url, frozen_paths or [out_dir / "best.yaml"], frozen_name, source)


def _result(study: Any, cfg: ExperimentConfig, storage_url: str, frozen_paths: list[Path],
            frozen_name: str | None, source: str) -> TuneResult:
    from optuna.trial import TrialState

    from mosaicrec.tuning.freeze import freeze_best

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {study.study_name!r} has no complete trial (all pruned or failed)")
    best = study.best_trial
    default = [t.value for t in complete if t.user_attrs.get("default")]
    frozen = [freeze_best(cfg, best, p, study.study_name, storage_url, source, frozen_name) for p in frozen_paths]
    return TuneResult(
        study_name=study.study_name, storage=storage_url, n_complete=len(complete),
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials), best_number=best.number,
        best_value=float(best.value), best_params=dict(best.params),
        default_value=float(default[0]) if default else None, frozen=frozen)
