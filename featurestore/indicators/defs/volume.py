"""Volume-based indicators (OBV, AD, ADOSC, MFI ...): filled by the volume family.

Kernels live in ``kernels/volume.py``. See ``defs/__init__.py`` for the contract.
"""

from __future__ import annotations

from featurestore.indicators.base import IndicatorDef

DEFS: tuple[IndicatorDef, ...] = ()

STATE_LAYOUTS: dict[str, tuple[str, ...]] = {}
