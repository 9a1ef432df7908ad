"""Registered models. Importing this package registers the built-in models."""

from mosaicrec.models import (  # noqa: F401  (registration)
    bert4rec,
    bprmf,
    c2dsr,
    freedom,
    gru4rec,
    haf_vt,
    lightgcn,
    lirdrec,
    llm_emf,
    molar,
    sasrec,
    vbpr,
    xcross,
)
from mosaicrec.models.base import ModelContext, Recommender

__all__ = ["ModelContext", "Recommender"]
