"""Volume kernels (OBV, AD, ADOSC, MFI ...): filled by the volume family.

Kernels follow the contract in ``common`` and ``defs/__init__.py``.
"""

from __future__ import annotations
