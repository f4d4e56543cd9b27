"""ML-transform kernels (logret, returns, z-score, ...): filled by the transforms family.

Kernels follow the contract in ``common`` and ``defs/__init__.py``.
"""

from __future__ import annotations
