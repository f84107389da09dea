"""The architecture step: the shared `common.architect.Architect` (first order, or second
order with --unrolled), kept under the authors' file name. Unlike the authors' DARTS-space
`new()`, the second-order step never copies the model, so k, the anchor and the masks can
not be lost. common/search_script.py builds it from the flags."""
from common.architect import Architect

__all__ = ["Architect"]
