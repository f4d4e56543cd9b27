"""[write] Indicator state packing: one bytes value per (view, entity), checked by a header."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from featurestore.views import FeatureView

_STATE_MAGIC = b"FS"
_STATE_HEADER = struct.Struct("<2sHI")  # magic, layout version, crc32 of the view's spec


def _view_crc(view: FeatureView) -> int:
    from featurestore.indicators import STATE_VERSION

    text = json.dumps([s.to_dict() for s in view.indicators], sort_keys=True) + f"|{STATE_VERSION}"
    return zlib.crc32(text.encode())


def pack_states(view: FeatureView, states: Sequence[np.ndarray]) -> list[bytes]:
    """One bytes value per entity: a header, then every indicator's state row, in spec order."""
    from featurestore.indicators import STATE_VERSION

    matrix = np.ascontiguousarray(np.hstack(states) if states else np.empty((0, 0)), dtype="<f8")
    head = _STATE_HEADER.pack(_STATE_MAGIC, STATE_VERSION, _view_crc(view))
    return [head + row.tobytes() for row in matrix]


def unpack_states(view: FeatureView, blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(ok, matrix): which blobs are valid for this view and library, and their state rows."""
    from featurestore.indicators import STATE_VERSION

    width = view.state_len
    head = _STATE_HEADER.pack(_STATE_MAGIC, STATE_VERSION, _view_crc(view))
    size = len(head) + 8 * width
    ok = np.array([len(b) == size and bytes(b[: len(head)]) == head for b in blobs], dtype=bool)
    matrix = np.zeros((len(blobs), width), dtype=np.float64)
    if ok.any():
        good = b"".join(bytes(b[len(head) :]) for b, k in zip(blobs, ok) if k)
        matrix[ok] = np.frombuffer(good, dtype="<f8").reshape(-1, width)
    return ok, matrix
