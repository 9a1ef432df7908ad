"""Target positions in a ranked candidate list: a batched torch path and a plain numpy reference.

Tie rule (pessimistic, leak-free): candidates are ordered by score, descending; among equal
scores every non-target comes before every target, and targets tied with each other are
ordered by item id. The position of target t is therefore

    1 + #{non-target candidates c: s_c >= s_t} + #{targets u != t: s_u > s_t or (s_u == s_t and u < t)}

so a model that scores everything equally ranks its targets last, never first. With one
target this is ``1 + #(s_c > s_t) + #(s_c == s_t, c != t)``. Non-candidates (padding column 0,
other domains' items, masked seen items) never count. NaN scores are an error.
"""

from __future__ import annotations

import numpy as np
import torch


def check_scores(scores: torch.Tensor, n_cols: int, users: torch.Tensor) -> torch.Tensor:
    """Validate a model's ``[B, N+1]`` score matrix and return it as float32."""
    if scores.dim() != 2 or scores.shape[1] != n_cols:
        raise ValueError(f"model.score returned shape {tuple(scores.shape)}, expected [B, {n_cols}] "
                         "(one column per item id 0..N)")
    scores = scores.float()
    nan_rows = torch.isnan(scores[:, 1:].amax(dim=1))  # [B]; amax propagates NaN
    if bool(nan_rows.any()):
        row = int(nan_rows.nonzero()[0, 0])
        raise ValueError(f"model.score returned NaN scores (first for the query of user_idx "
                         f"{int(users[row])})")
    return scores


HIST_MAX_TARGETS = 32  # up to this many targets per query: histogram counting, else a full sort


def _count_ge_sorted(others: torch.Tensor, st: torch.Tensor) -> torch.Tensor:
    """#{others >= st}: sort the others once, binary-search every target.  -> [B, T]"""
    asc = torch.sort(others, dim=1).values  # [B, M]
    return others.shape[1] - torch.searchsorted(asc, st.contiguous(), side="left")


def _count_ge_hist(others: torch.Tensor, st: torch.Tensor) -> torch.Tensor:
    """#{others >= st}: place every other among the few sorted targets, then suffix-sum.  -> [B, T]

    With targets sorted ascending, other o is >= the i-th smallest target exactly when at
    least i+1 targets are <= o.
    """
    s_asc, perm = torch.sort(st, dim=1)  # [B, T]
    j = torch.searchsorted(s_asc, others.contiguous(), side="right")  # [B, M] #targets <= o
    hist = torch.zeros(st.shape[0], st.shape[1] + 1, dtype=torch.int64, device=st.device)
    hist.scatter_add_(1, j, torch.ones_like(j))  # [B, T+1]
    at_least = hist.flip(1).cumsum(1).flip(1)[:, 1:]  # [B, T] #others with j >= i+1
    return torch.empty_like(at_least).scatter_(1, perm, at_least)  # back to slot order


def _count_ge(others: torch.Tensor, valid: torch.Tensor | None, st: torch.Tensor) -> torch.Tensor:
    """#{valid others >= st} for every target; invalid others hold -inf.  -> [B, T]

    ``valid`` (None = every entry valid) is only read when a target scores -inf, the one case
    where an invalid -inf entry would compare as >= the target.
    """
    if st.shape[1] == 1:
        count = (others >= st).sum(dim=1, keepdim=True)  # [B, 1] comparison counting
    elif st.shape[1] <= HIST_MAX_TARGETS:
        count = _count_ge_hist(others, st)
    else:
        count = _count_ge_sorted(others, st)
    low = torch.isneginf(st)  # [B, T]
    if bool(low.any()):
        n_valid = (valid.sum(dim=1, keepdim=True) if valid is not None
                   else torch.full_like(count[:, :1], others.shape[1]))  # [B, 1]
        count = torch.where(low, n_valid.expand_as(count), count)
    return count


def _target_ties(st: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """#{other targets ranked before each target}: higher score, or equal score and lower id.

    A stable descending sort by score of the targets listed in ascending id order (padding
    last, scored -inf) gives each target its place among the targets.  -> [B, T]
    """
    if st.shape[1] == 1:
        return torch.zeros_like(tgt)
    big = torch.iinfo(tgt.dtype).max
    by_id = torch.sort(torch.where(tgt == 0, big, tgt), dim=1, stable=True).indices  # [B, T]
    s_id = st.gather(1, by_id).masked_fill(tgt.gather(1, by_id) == 0, float("-inf"))  # [B, T]
    order = torch.sort(s_id, dim=1, descending=True, stable=True).indices  # [B, T]
    place = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device)
                                             .expand_as(order).contiguous())  # [B, T] place in id order
    return torch.empty_like(place).scatter_(1, by_id, place)  # [B, T] back to slot order


def _valid_others(cand: torch.Tensor | None, rows: torch.Tensor, tgt: torch.Tensor, n_cols: int,
                  seen: torch.Tensor | None) -> torch.Tensor:
    """[B, N+1] bool: candidates other than the query's targets (and its seen items)."""
    if cand is not None:
        valid = cand[rows]  # [B, N+1] a fresh copy
        if seen is not None:
            valid &= ~seen  # masked seen items
    else:
        valid = (~seen if seen is not None
                 else torch.ones(len(tgt), n_cols, dtype=torch.bool, device=tgt.device))  # [B, N+1]
    valid.scatter_(1, tgt, False)  # targets are ranked separately, never as "others"
    valid[:, 0] = False
    return valid


def positions_full(scores: torch.Tensor, cand: torch.Tensor | None, rows: torch.Tensor, tgt: torch.Tensor,
                   seen: torch.Tensor | None = None) -> torch.Tensor:
    """Positions ``[B, T]`` (0 at padded target slots) of the targets among the candidates.

    scores [B, N+1] float; cand [R, N+1] bool candidate table (column 0 False) and rows [B]
    the row of each query, or ``cand=None`` when every item 1..N is a candidate;
    tgt [B, T] int64 distinct target ids (0 = padding); seen [B, N+1] bool, True at the items
    to exclude (the query's history; its own targets are ranked whatever ``seen`` says).
    """
    tmask = tgt != 0  # [B, T]
    st = scores.gather(1, tgt)  # [B, T]
    if tgt.shape[1] == 1:  # one target: comparison counting on the score matrix
        ge = scores >= st  # [B, N+1]
        if cand is None and seen is None:  # every real item but the target itself
            count = ge[:, 1:].sum(dim=1, keepdim=True) - 1  # [B, 1]
        else:
            count = (ge & _valid_others(cand, rows, tgt, scores.shape[1], seen)).sum(dim=1, keepdim=True)
        pos = 1 + count
    else:
        valid = _valid_others(cand, rows, tgt, scores.shape[1], seen)
        others = scores.masked_fill(~valid, float("-inf"))  # [B, N+1]
        pos = 1 + _count_ge(others, valid, st) + _target_ties(st, tgt)  # [B, T]
    return torch.where(tmask, pos, torch.zeros_like(pos))


def positions_sampled(scores: torch.Tensor, neg: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Positions ``[B, T]`` of the targets among themselves and the negatives ``neg [B, n]`` (0 = none)."""
    valid = neg != 0  # [B, n]
    others = scores.gather(1, neg).masked_fill(~valid, float("-inf"))  # [B, n]
    tmask = tgt != 0
    st = scores.gather(1, tgt)  # [B, T]
    pos = 1 + _count_ge(others, valid, st) + _target_ties(st, tgt)
    return torch.where(tmask, pos, torch.zeros_like(pos))


def top_k(scores: torch.Tensor, cand: torch.Tensor | None, rows: torch.Tensor, tgt: torch.Tensor,
          seen: torch.Tensor | None, k: int) -> torch.Tensor:
    """``[B, k]`` best candidates per query (targets included, seen items excluded when given);
    0 where a query has fewer than k candidates. Order among equal scores is unspecified."""
    valid = (cand[rows] if cand is not None  # [B, N+1]
             else torch.ones(scores.shape, dtype=torch.bool, device=scores.device))
    if seen is not None:
        valid &= ~seen  # seen [B, N+1] bool
        valid.scatter_(1, tgt, True)  # a re-consumed target stays a candidate
    valid[:, 0] = False
    low = torch.finfo(scores.dtype).min  # a -inf candidate still outranks a non-candidate
    masked = torch.where(valid, scores.clamp(min=low), float("-inf"))  # [B, N+1]
    k = min(k, masked.shape[1])
    idx = torch.topk(masked, k, dim=1).indices  # [B, k]
    n_valid = valid.sum(dim=1, keepdim=True)  # [B, 1]
    ok = torch.arange(k, device=idx.device)[None, :] < n_valid  # [B, k]
    return torch.where(ok, idx, torch.zeros_like(idx))


def reference_top_k(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """``[k]`` best candidates of one query (score descending, ties by item id), 0-padded."""
    candidates = np.asarray(candidates, dtype=np.int64)
    order = np.lexsort((candidates, -scores[candidates].astype(np.float64)))[:k]
    out = np.zeros(k, dtype=np.int64)
    out[: len(order)] = candidates[order]
    return out


def reference_positions(scores: np.ndarray, candidates: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Plain path for one query: sort the candidates and read off the targets' positions.

    scores [N+1]; candidates: item ids (targets included); targets: distinct item ids.
    Returns the positions in the order of ``targets``.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    is_t = np.isin(candidates, targets)
    if is_t.sum() != len(targets):
        raise ValueError("every target must be a candidate")
    s = scores[candidates].astype(np.float64)
    order = np.lexsort((candidates, is_t, -s))  # score desc; non-targets first; then item id
    pos = np.empty(len(candidates), dtype=np.int64)
    pos[order] = np.arange(1, len(candidates) + 1)
    where = dict(zip(candidates[is_t].tolist(), pos[is_t].tolist(), strict=True))
    return np.array([where[int(t)] for t in targets], dtype=np.int64)
