"""Typed configuration: pydantic models that reject unknown keys, YAML loading, dotted overrides.

An experiment YAML has the sections ``data`` (:class:`PrepareConfig`), ``model`` (a mapping
with ``name`` plus that model's own typed config), ``train`` (:class:`TrainConfig`) and
``eval`` (:class:`EvalConfig`). Command-line overrides are ``section.key=value`` strings
whose values are parsed as YAML scalars (``train.lr=1e-3``, ``eval.ks=[5,10]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    pass


class StrictModel(BaseModel):
    """Base of every config: unknown keys are errors, assignment is validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class PrepareConfig(StrictModel):
    """How raw data becomes the canonical tables (see data/prepare.py)."""

    source: str = Field(description="registered source adapter name (mosaicrec.registry.SOURCES)")
    path: str = Field(description="raw data file or folder")
    name: str | None = Field(None, description="dataset name; defaults to the folder name")
    options: dict[str, Any] = Field(default_factory=dict, description="source-specific options")
    domains: list[str] | None = Field(None, description="keep only these domains")
    min_user_interactions: int = Field(0, ge=0, description="iterative k-core: users")
    min_item_interactions: int = Field(0, ge=0, description="iterative k-core: items")
    kcore_scope: Literal["global", "domain"] = "global"
    duplicates: Literal["keep_first", "keep_last", "keep_all"] = "keep_all"
    split: Literal["loo", "temporal", "ratio", "source"] = "loo"
    temporal_cutoffs: list[int] | None = Field(
        None, description="[valid_start_ts, test_start_ts] for the global temporal split")
    ratio: list[float] = Field(default_factory=lambda: [0.8, 0.1, 0.1])
    cold_item_fraction: float = Field(0.0, ge=0.0, lt=1.0,
                                      description="share of items held out of training entirely")
    on_bad_record: Literal["error", "skip"] = "error"
    tie_policy: Literal["source", "shuffle"] = Field(
        "source", description="order of equal timestamps: source order, or a seeded shuffle (seed)")
    seed: int = 2024


class TrainConfig(StrictModel):
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_len: int = Field(50, ge=1, description="history length cap (most recent items kept)")
    patience: int = Field(5, ge=1, description="early stopping on the validation monitor")
    monitor: str = "ndcg@10"
    seed: int = 2024
    num_workers: int = 0
    shuffle: bool = Field(True, description="shuffle training windows each epoch (off: fixed order, e.g. DDP checks)")
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    grad_clip: float | None = None
    fused_optimizer: bool = Field(
        True, description="AdamW's fused kernel (torch.optim.AdamW(fused=True)); false: the per-tensor "
        "implementation. On CPU the fused update step was ~7x faster (docs/training.md)")
    val_every: int = Field(1, ge=1, description="validate every N epochs")
    val_users: int | None = Field(None, description="cap on validation queries (deterministic subset)")


class EvalConfig(StrictModel):
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20])
    mode: Literal["full", "sampled", "both"] = "full"
    n_negatives: int = Field(999, ge=1)
    negatives_seed: int = 0
    mask_seen: bool = False
    within_domain: bool = Field(True, description="rank only the target domain's items (cross-domain data)")
    query: Literal["next", "set"] = Field(
        "next", description="next: one query per target interaction; set: one per user with all its targets")
    batch_size: int = 512
    precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="bfloat16: model forward under CPU/CUDA bf16 autocast (faster where the "
        "CPU has bf16 units); scores are compared as float32")
    save_topk: int = 0
    save_per_user: bool = True


class ExperimentConfig(StrictModel):
    name: str = "experiment"
    data: PrepareConfig
    model: dict[str, Any]
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seeds: list[int] = Field(default_factory=lambda: [2024])
    features: dict[str, Any] = Field(default_factory=dict, description="feature-store inputs for content models")
    expected: dict[str, Any] = Field(default_factory=dict,
                                     description="bench --check ranges: {'overall.ndcg@10': [lo, hi], ...}")
    tune: dict[str, Any] = Field(default_factory=dict, description="search space for `mosaicrec tune`")

    @model_validator(mode="after")
    def _model_has_name(self) -> ExperimentConfig:
        if "name" not in self.model:
            raise ValueError("model: missing key 'name'")
        return self

    def model_config_obj(self) -> BaseModel:
        """The model's own typed config, validated against the registered model class."""
        from mosaicrec.registry import MODELS

        params = dict(self.model)
        cls = MODELS.get(params.pop("name"))
        try:
            return cls.Config(**params)
        except ValidationError as e:
            raise ConfigError(f"model {self.model['name']!r}: {e}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r}: empty key segment")
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" as a string; users mean a number
            value = float(value)
        except ValueError:
            pass
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (a copy is returned)."""
    import copy

    out = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    raw = apply_overrides(load_yaml(path), overrides or [])
    base = Path(path).resolve().parent
    try:
        cfg = ExperimentConfig(**raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {e}") from None
    # Relative data paths are relative to the YAML file's folder.
    if not Path(cfg.data.path).is_absolute():
        cfg.data.path = str((base / cfg.data.path).resolve())
    cfg.model_config_obj()  # validate the model section now, not at training time
    return cfg


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
