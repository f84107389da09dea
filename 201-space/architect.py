"""The architecture step: the shared `common.architect.Architect` (first order, or second
order with --unrolled), kept under the authors' file name. common/search_script.py builds
it from the flags."""
from common.architect import Architect

__all__ = ["Architect"]
