"""Post-alignment with a trained ID model, the symmetric InfoNCE, the history cap, bench wiring."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mosaicrec.data.batches import SeqBatch
from mosaicrec.models.base import ModelContext, Recommender
from mosaicrec.models.molar.config import AlignConfig


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE: a [P, D] and b [P, D] pair row by row; the other rows are negatives.

    ``0.5 * (CE(cos(a, b) / tau) + CE(cos(b, a) / tau))`` with the diagonal as targets, so
    ``info_nce(a, b) == info_nce(b, a)``.
    """
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau  # [P, P]
    labels = torch.arange(len(a), device=a.device)  # [P]
    return 0.5 * (F.cross_entropy(sim, labels) + F.cross_entropy(sim.T, labels))


def align_positions(has_target: torch.Tensor, which: str, max_pairs: int) -> torch.Tensor:
    """[B, L] bool: the positions aligned (every target, or each row's last), at most ``max_pairs``."""
    sel = has_target.clone()  # [B, L]
    if which == "last":
        sel = torch.zeros_like(has_target)
        sel[:, -1] = has_target[:, -1]
    idx = sel.flatten().nonzero().squeeze(1)  # [P]
    if len(idx) > max_pairs:
        keep = idx[torch.randperm(len(idx), device=idx.device)[:max_pairs]]
        sel = torch.zeros_like(sel).flatten()
        sel[keep] = True
        sel = sel.view_as(has_target)
    return sel


def load_teacher(cfg: AlignConfig, ctx: ModelContext) -> Recommender:
    """The trained ID model of ``cfg.id_run`` (frozen, eval mode); it must share the data split."""
    from mosaicrec.training.run import load_run

    if cfg.id_run is None:
        how = (f"run `mosaicrec bench` (it trains {cfg.id_bench!r} first)" if cfg.id_bench
               else "set model.align.id_run to a trained ID run directory (e.g. a SASRec run)")
        raise ValueError(f"molar: align.alpha={cfg.alpha} > 0 needs an ID model: {how}; align.alpha=0 disables alignment")
    run = load_run(cfg.id_run)
    data_hash = ctx.extra.get("data_hash")
    if data_hash is not None and run.data.meta.get("content_hash") != data_hash:
        raise ValueError(f"{Path(cfg.id_run) / 'data.json'}: the ID model was trained on other data "
                         f"({run.data.meta.get('content_hash')!r}, this run: {data_hash!r}); align needs the same split")
    if run.data.n_items != ctx.n_items:
        raise ValueError(f"{cfg.id_run}: ID model has {run.data.n_items} items, this data {ctx.n_items}")
    model = run.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def teacher_states(teacher: Recommender, batch: SeqBatch) -> torch.Tensor:
    """[B, L', D] E_id at each position (sequential ID models), or [B, 1, D] from ``user_repr``."""
    dev = next(teacher.parameters()).device
    b = batch.to(dev)
    with torch.no_grad():
        states = getattr(teacher, "sequence_states", None)
        if callable(states):
            return states(b)  # [B, L', D]
        return teacher.user_repr(b)[:, None]  # [B, 1, D]


def cap_windows(windows: Any, per_user: int | None) -> Any:
    """Keep each user's most recent ``per_user`` windows (windows are cut from the end per user)."""
    if per_user is None or len(windows) == 0:
        return windows
    from dataclasses import fields

    users = windows.users  # [W], grouped by user, most recent window first
    start = torch.ones_like(users, dtype=torch.bool)  # [W]
    start[1:] = users[1:] != users[:-1]
    group = torch.cumsum(start.long(), 0) - 1  # [W]
    first = torch.nonzero(start).squeeze(1)  # [G]
    rank = torch.arange(len(users)) - first[group]  # [W] 0 = most recent
    keep = rank < per_user
    return type(windows)(**{f.name: getattr(windows, f.name)[keep] for f in fields(windows)})


def prepare_bench(cfg: Any, run_dependency: Callable[[str, list[str]], str]) -> Any:
    """Set ``align.id_run`` to the (trained or reused) run of benchmark ``align.id_bench``."""
    model = dict(cfg.model)
    align = dict(model.get("align") or {})
    if float(align.get("alpha", 0.0)) <= 0 or align.get("id_run") or not align.get("id_bench"):
        return cfg
    align["id_run"] = str(run_dependency(align["id_bench"], list(align.get("id_overrides") or [])))
    model["align"] = align
    return cfg.model_copy(update={"model": model})
