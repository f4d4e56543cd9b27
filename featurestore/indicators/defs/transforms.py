"""ML transforms (logret, returns, z-score, realized vol, VWAP, ...): filled by the transforms family.

Kernels live in ``kernels/transforms.py``. See ``defs/__init__.py`` for the contract.
"""

from __future__ import annotations

from featurestore.indicators.base import IndicatorDef

DEFS: tuple[IndicatorDef, ...] = ()

STATE_LAYOUTS: dict[str, tuple[str, ...]] = {}
