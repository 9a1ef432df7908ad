"""Molar: LM item and user encoders with post-alignment to an ID model (see model.py, docs/molar.md)."""

from mosaicrec.models.molar.model import Molar  # noqa: F401  (registration)
