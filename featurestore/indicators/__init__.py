"""Technical indicators that match TA-Lib 0.8 bit for bit, batched over symbols, resumable.

The ``compute`` step of the data path: ``compute_batch`` runs one numba kernel over every
symbol at once and returns the state that ``update_batch`` continues from on append. Specs are
``IndicatorSpec`` objects or short strings (``"sma_20"``, ``"macd_12_26_9"``, ``"bbands_20_2"``);
see ``registry`` for the naming rule and ``api`` for the NaN behaviour and the state contract.

Layout: ``defs/<family>.py`` (pure Python definitions: inputs, parameters, outputs, lookback,
state length, references) and ``kernels/<family>.py`` (numba kernels), one pair per family
(averages, momentum, directional, volatility, volume, transforms); ``defs/__init__.py`` says
how to add an indicator, ``kernels/common.py`` holds the shared building blocks.

User-defined indicators: ``register`` (``featurestore.indicators.user`` documents the contract,
windowed or recursive) adds a kind that views, batching and incremental state treat like a
built-in; its kernel compiles at registration, or loads from numba's disk cache when another
process registered the same code.

Importing this package compiles nothing and does not import numba: kernels compile (or load
from numba's on-disk cache) on first use, or up front with ``warmup()``. ``prepare_update``
loads a view's kernels once and then advances all its specs per new bar with ~no Python work.
"""

from __future__ import annotations

from featurestore.indicators.api import (
    STATE_LAYOUTS,
    STATE_VERSION,
    compute,
    compute_batch,
    new_state,
    resolve_spec,
    state_from_bytes,
    state_to_bytes,
    update_batch,
    update_batch_inplace,
    warmup,
)
from featurestore.indicators.base import UserKernelError
from featurestore.indicators.prepared import BatchUpdater, prepare_update
from featurestore.indicators.registry import (
    KINDS,
    REGISTRY,
    IndicatorDef,
    IndicatorSpec,
    ParamDef,
    indicator,
    parse_indicator,
    parse_output_name,
)
from featurestore.indicators.user import register, unregister

__all__ = [
    "KINDS",
    "REGISTRY",
    "STATE_LAYOUTS",
    "STATE_VERSION",
    "BatchUpdater",
    "IndicatorDef",
    "UserKernelError",
    "IndicatorSpec",
    "ParamDef",
    "compute",
    "compute_batch",
    "indicator",
    "new_state",
    "parse_indicator",
    "parse_output_name",
    "prepare_update",
    "register",
    "resolve_spec",
    "state_from_bytes",
    "state_to_bytes",
    "update_batch",
    "unregister",
    "update_batch_inplace",
    "warmup",
]
