"""Progressive Weight Copying (LIRDRec): per-user attention over the modality branches.

For a user with branch vectors ``u_b`` the scorer MLPs give ``a_b``; the attention is
``softmax(w1 * a + w2 * theta)`` with ``theta`` a learnable per-user vector (one entry per
branch). At the start of epoch ``e`` (1-based, as in the official code) ``w1 <- w1 * base**e``
and the pair (w1, w2) is renormalised to sum 1, and ``theta`` is overwritten with the attention
of the previous epoch's last training forward pass ("weight copying"). ``w1``/``w2`` are
buffers and that last attention is saved in the state dict as ``last_att`` (when there is one;
state dicts without it load too), so a run resumed from a checkpoint continues the schedule and
its first epoch still copies the attention of the epoch before the interruption.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LAST_ATT = "last_att"


def decay_step(w1: float, w2: float, epoch: int, base: float) -> tuple[float, float]:
    """One PWC schedule step: ``w1 * base**epoch`` then renormalise (w1, w2) to sum 1."""
    w1 = w1 * base ** epoch
    total = w1 + w2
    return w1 / total, w2 / total


class PWC(nn.Module):
    w: torch.Tensor  # buffer [2]: (w1, w2)
    def __init__(self, n_users: int, n_branches: int, dim: int, w1: float, base: float) -> None:
        super().__init__()
        hidden = max(1, dim // 4)
        self.scorers = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, 1)) for _ in range(n_branches))
        self.theta = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, n_branches)))
        self.register_buffer("w", torch.tensor([w1, 1.0 - w1], dtype=torch.float64))
        self.base = base
        self._last_att: torch.Tensor | None = None

    def attention(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """[U, B] attention from the user blocks (each [U, D])."""
        a = torch.cat([scorer(b) for scorer, b in zip(self.scorers, blocks, strict=True)], dim=1)  # [U, B]
        w1, w2 = float(self.w[0]), float(self.w[1])
        att = F.softmax(w1 * a + w2 * self.theta, dim=1)  # [U, B]
        if self.training:
            self._last_att = att.detach()
        return att

    def forward(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        att = self.attention(blocks)  # [U, B]
        return torch.cat([att[:, i:i + 1] * b for i, b in enumerate(blocks)], dim=1)  # [U, B*D]

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self._last_att is not None:
            destination[prefix + LAST_ATT] = self._last_att.clone()  # [U, B]

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        last = state_dict.pop(prefix + LAST_ATT, None)  # optional: older state dicts lack it
        if last is not None:
            if tuple(last.shape) != tuple(self.theta.shape):
                raise ValueError(f"PWC state {prefix + LAST_ATT}: shape {tuple(last.shape)}, "
                                 f"expected {tuple(self.theta.shape)} (users x branches)")
            self._last_att = last.detach().to(self.theta.device, self.theta.dtype).clone()
        super()._load_from_state_dict(state_dict, prefix, *args)

    def step_epoch(self, epoch: int) -> None:
        """Apply the schedule for (1-based) ``epoch`` and copy the last attention into theta."""
        w1, w2 = decay_step(float(self.w[0]), float(self.w[1]), epoch, self.base)
        self.w.copy_(torch.tensor([w1, w2], dtype=torch.float64))
        if self._last_att is not None:
            with torch.no_grad():
                self.theta.copy_(self._last_att)
