"""torch.compile (inductor, CPU C++ backend) of a text encoder's batched forward pass.

Inductor fuses the elementwise work between the matrix products (casts, GELU, softmax, layer
norms, residual adds) into generated C++ loops. One compilation with dynamic shapes
(``dynamic=True``: batch rows and token length symbolic) serves every batch of at least
:data:`MIN_ROWS` texts, so the number of compilations stays bounded (one graph for short texts,
one more if texts longer than the short-text attention limit occur; see ``attention.py``).
Forwards of a single text stay eager: dynamo specialises a batch of one into its own graph, and
the one-text call is the path a user takes for a handful of texts, where a compilation costing
tens of seconds never pays back.

Compilation needs a C++ compiler; without one (or when compiling fails for any other reason)
:class:`CompiledForward` logs one warning and runs eager, never fails.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("mosaicrec.features")

MIN_ROWS = 2  # batches with fewer texts run eager
AUTO_MIN_TEXTS = 200_000  # compile "auto": compile when a job encodes at least this many texts (docs/features.md)


def compiler_problem() -> str | None:
    """Why inductor's CPU backend cannot work here (no C++ compiler found), or None when it can."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as err:  # InvalidCxxCompiler and whatever an older/newer torch raises instead
        return f"no usable C++ compiler for torch inductor ({type(err).__name__}: {err})".strip()
    return None


class CompiledForward:
    """Calls ``module(feats)`` through ``torch.compile`` for batches of >= :data:`MIN_ROWS` rows.

    Compilation happens lazily on the first such batch (its time is kept in ``compile_seconds``);
    if the compiler is missing or compiling/running the compiled graph raises, a warning is logged
    once, the batch is re-run eagerly and every later call stays eager (``active`` turns False,
    ``fallback_reason`` says why).
    """

    def __init__(self, module: Any, label: str = "encoder") -> None:
        self.module = module
        self.label = label
        self.min_rows = MIN_ROWS
        self.active = True
        self.fallback_reason: str | None = None
        self.compile_seconds: float | None = None
        self._fn: Any = None

    def _disable(self, reason: str) -> None:
        self.active = False
        self.fallback_reason = reason
        self._fn = None
        log.warning("%s: torch.compile disabled, running eager: %s", self.label, reason)

    def __call__(self, feats: dict[str, Any], rows: int) -> Any:
        if not self.active or rows < self.min_rows:
            return self.module(feats)
        if self._fn is None:
            problem = compiler_problem()
            if problem is not None:
                self._disable(problem)
                return self.module(feats)
            import torch

            self._fn = torch.compile(self.module, dynamic=True)
        first = self.compile_seconds is None
        t0 = time.perf_counter()
        try:
            out = self._fn(feats)
        except Exception as err:  # a compile failure must never lose the job: eager gives the same numbers
            self._disable(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            return self.module(feats)
        if first:
            self.compile_seconds = time.perf_counter() - t0
            log.info("%s: torch.compile built its graph in %.1f s", self.label, self.compile_seconds)
        return out
