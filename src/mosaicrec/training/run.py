"""Building models from configs, and loading finished runs (no unpickling anywhere).

Run directory layout (serving and reports depend on it)::

    runs/<id>/config.yaml         the resolved ExperimentConfig (written before training)
              data.json           {"path", "content_hash", "work_dir"} of the prepared data
              model.safetensors   best weights, plain state dict
              model.json          {"model", "config", "n_items", "max_len", "data_hash", ...}
              metrics.csv         one row per epoch (CSVLogger)
              metrics.json        best validation and the single test evaluation
              per_query.parquet   the Evaluator's per-query frame on test
              checkpoints/{best.ckpt,last.ckpt}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mosaicrec.config import ConfigError, ExperimentConfig, PrepareConfig, load_yaml
from mosaicrec.data.schema import TRAIN, DataError, PreparedData
from mosaicrec.models.base import ModelContext, Recommender
from mosaicrec.registry import MODELS
from mosaicrec.utils import read_json

#: ``data.source`` value meaning "``data.path`` is an already prepared folder".
PREPARED_SOURCE = "prepared"


def resolve_data(cfg: PrepareConfig, work_dir: str | Path) -> Path:
    """The prepared folder for ``cfg``: prepared on first use and cached in ``work_dir``."""
    if cfg.source == PREPARED_SOURCE:
        return Path(cfg.path)
    from mosaicrec.data.prepare import ensure_prepared

    return Path(ensure_prepared(cfg, Path(work_dir)))


def build_context(data: PreparedData, cfg: ExperimentConfig, work_dir: str | Path | None = None) -> ModelContext:
    """What the model may know at build time: sizes, item domains, features, train pairs (CF)."""
    cls = MODELS.get(cfg.model["name"])
    ctx = ModelContext(n_items=data.n_items, n_users=data.n_users, n_domains=data.n_domains,
                       item_domain=data.item_domain, max_len=cfg.train.max_len, domains=data.domains)
    if cfg.features:
        from mosaicrec.features.store import resolve_features

        wd = Path(work_dir) if work_dir is not None else Path("work")
        ctx.features, ctx.feature_masks = resolve_features(cfg.features, data, wd)
    ctx.extra["data_hash"] = data.meta.get("content_hash")
    if getattr(cls, "needs_item_content", False):
        ctx.extra["item_content"] = item_content(data)
    if getattr(cls, "needs_item_text", False):  # text-based models (lm_seqrec, xcross) read item texts
        ctx.extra["item_fields"] = item_fields(data)
    if getattr(cls, "kind", "sequential") == "cf" or getattr(cls, "needs_train_pairs", False):
        rows = data.split == TRAIN  # [nnz]
        ctx.train_pairs = np.stack([data.user_of_rows()[rows], data.item[rows]], axis=1)  # [T, 2]
    return ctx


def item_content(data: PreparedData) -> Any:
    """Item text (``text``, else ``title``) and image paths by item id, for models reading raw content."""
    from mosaicrec.models.molar.items import ItemContent

    fields = item_fields(data)  # [N+1] each, row 0 = ""
    texts = [t or ti for t, ti in zip(fields["text"], fields["title"], strict=True)]
    items = data.items
    images: list[str | None] = []
    if "image" in items.columns and items["image"].drop_nulls().len() > 0:
        images = [None] + [str(data.root / p) if p and not Path(p).is_absolute() else p for p in items["image"].to_list()]
    return ItemContent(texts=texts, images=images)


def item_fields(data: PreparedData) -> dict[str, list[str]]:
    """``{"title": [N+1], "text": [N+1]}`` item strings (row 0 and missing values are "")."""
    out: dict[str, list[str]] = {}
    for col in ("title", "text"):
        vals = data.items[col].fill_null("").cast(str).to_list() if col in data.items.columns else []
        out[col] = ["", *vals] if vals else [""] * (data.n_items + 1)
    return out


def build_model(cfg: ExperimentConfig, data: PreparedData, work_dir: str | Path | None = None) -> Recommender:
    cls = MODELS.get(cfg.model["name"])
    return cls(cfg.model_config_obj(), build_context(data, cfg, work_dir))


@dataclass
class LoadedRun:
    cfg: ExperimentConfig
    data: PreparedData
    model: Recommender
    run_dir: Path
    info: dict[str, Any]  # model.json


def load_config(run_dir: Path) -> ExperimentConfig:
    path = run_dir / "config.yaml"
    try:
        return ExperimentConfig(**load_yaml(path))
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """Rebuild a finished run: config, prepared data (hash-checked), model in eval mode."""
    from mosaicrec.training.weights import load_weights

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run directory not found")
    cfg = load_config(run_dir)
    where = read_json(run_dir / "data.json")
    info = read_json(run_dir / "model.json")
    data = PreparedData.load(where["path"])
    if data.meta.get("content_hash") != where.get("content_hash"):
        raise DataError(f"{run_dir / 'data.json'}: prepared data at {where['path']} has content_hash "
                        f"{data.meta.get('content_hash')!r}, the run was trained on {where.get('content_hash')!r}")
    if info.get("n_items") != data.n_items:
        raise DataError(f"{run_dir / 'model.json'}: n_items {info.get('n_items')} != data's {data.n_items}")
    model = build_model(cfg, data, where.get("work_dir"))
    load_weights(model, run_dir / "model.safetensors", device="cpu")
    model.to(device).eval()
    return LoadedRun(cfg=cfg, data=data, model=model, run_dir=run_dir, info=info)
