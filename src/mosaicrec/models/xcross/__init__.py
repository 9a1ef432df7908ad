"""Text-based sequential recommenders on language models: ``lm_seqrec`` and X-Cross (``xcross``)."""

from mosaicrec.models.xcross import lm_seqrec, model  # noqa: F401  (registration)
