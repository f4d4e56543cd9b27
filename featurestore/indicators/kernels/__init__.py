"""numba kernels that reproduce TA-Lib 0.8 bit for bit, batched over symbols, resumable from state.

One module per family (``averages``, ``momentum``, ``directional``, ``volatility``, ``volume``,
``transforms``), shared building blocks and ``specialize`` in ``common``. Importing this package
imports numba (and ``common``) but no family module and compiles nothing; ``specialize``
imports a family on first use of one of its kernels. Older code that read a kernel as an
attribute of this module (``kernels.atr_run``) still works through ``__getattr__``.
"""

from __future__ import annotations

import importlib
from typing import Any

from featurestore.indicators.kernels.common import (
    BAD_INPUT_LENGTHS,
    BAD_STATE_SHAPE,
    fma,
    specialize,
)

__all__ = ["BAD_INPUT_LENGTHS", "BAD_STATE_SHAPE", "FAMILIES", "fma", "specialize"]

FAMILIES = ("averages", "momentum", "directional", "volatility", "volume", "transforms")


def __getattr__(name: str) -> Any:
    """``kernels.sma_run`` and the like: look the name up in the family modules."""
    if not name.startswith("__"):
        for fam in FAMILIES:
            mod = importlib.import_module(f"featurestore.indicators.kernels.{fam}")
            if hasattr(mod, name):
                return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
