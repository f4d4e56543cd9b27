"""Indicator definitions, one module per family; ``registry`` and ``api`` assemble them.

HOW TO ADD AN INDICATOR
=======================

Files (one pair per family; add to your family's pair only):

- ``defs/<family>.py`` (pure Python: no numba import, nothing compiled at import) exports
  ``DEFS: tuple[IndicatorDef, ...]`` and ``STATE_LAYOUTS: dict[str, tuple[str, ...]]`` (one
  entry per kind, column 0 always ``"count"``). Families: averages, momentum, directional,
  volatility, volume, transforms. A kind defined twice anywhere fails at import.
- ``kernels/<family>.py`` holds the ``@njit(cache=True)`` kernels (never ``fastmath``); shared
  building blocks are in ``kernels/common.py``. ``IndicatorDef.kernel`` names the kernel as
  ``"<family>.<function>"`` (``"averages.sma_run"``); the module is imported on first use.
  Numba's disk cache keys a kernel on its OWN file only: after editing ``kernels/common.py``
  run with an empty ``NUMBA_CACHE_DIR`` (or touch the family files), or stale code runs.

Kernel calling convention (the api calls exactly this one signature, see ``kernels.specialize``)::

    <kind>_run(*inputs, offsets, *params, state_in, state, *outputs) -> int

- ``inputs``: read-only C-contiguous float64 arrays in ``IndicatorDef.inputs`` order (names from
  open/high/low/close/volume), all symbols concatenated in time order.
- ``offsets``: int64, n_symbols+1; symbol k is ``inputs[offsets[k]:offsets[k+1]]``.
- ``params``: in ``IndicatorDef.params`` order, int64 for ``int`` params, float64 for ``float``.
- ``state_in``: [n_symbols, state_len] read-only, any layout; ``state``: writable C-contiguous
  [n_symbols, state_len] (may be the same array as state_in: in-place update). Start each
  symbol with ``_copy_row(state_in, state, k, copy)`` and work in ``state[k]``.
- ``outputs``: writable C-contiguous float64, one per ``IndicatorDef.outputs`` entry; the kernel
  writes EVERY element of its symbols' slices (NaN where TA-Lib gives NaN).
- Return 0, or the first nonzero code of ``common._check(offsets, n, state_in, state, width)``
  (and ``BAD_INPUT_LENGTHS`` when multi-input lengths differ) BEFORE writing anything.

State row: ``state[k, 0]`` = bars consumed since the symbol's first bar with ALL inputs
non-NaN (TA-Lib's begidx rule: while it is 0, skip leading bars where any input is NaN with
``_skip_leading_nan1/3/4``, writing NaN to the outputs). The rest is whatever makes
``run(x[:k]); run(x[k:]) == run(x)`` hold bit for bit for every k (warm-up sums, previous
values, rings of the last n-1 inputs at slot ``count % (n-1)``). A state row must be a pure
function of the bars seen (never of where calls were split), as the harness compares states.
Document the layout in ``STATE_LAYOUTS``; changing an existing layout means bumping
``api.STATE_VERSION``.

IndicatorDef fields: ``kind`` (lower-case, may contain ``_`` like ``plus_di``; parsing takes the
longest registered kind), ``inputs``, ``params`` (``ParamDef(name, type, default, lo, hi,
aliases, tag)``: TA-Lib's defaults and accepted ranges), ``outputs`` (``""`` = main output,
other keys name the rest, e.g. ``("upper", "middle", "lower")``), ``kernel``, ``talib_name``
(the ``talib.abstract`` name, used to check ``lookback``), ``lookback(p)`` = index of the
first non-NaN output on NaN-free input (TA-Lib's lookback, incl. unstable period),
``state_len(p)``, ``talib_ref`` (``base.ta("NAME", "param", ..., inputs=HLC)``), optional
``pandas_ref`` and hooks ``canonical``/``name_tokens``/``complete``/``fixed`` (see ``base``).

Naming rule: ``<kind>[_<output>]_<params in order>[_<tag><value> for tagged params that are not
at their default]``; numbers as shortest round-trip decimals with ``.`` written ``p``
(``bbands_upper_20_2_1p5``, ``ema_30_u50``). TA-Lib's unstable period is the tagged ``int``
parameter ``unstable`` (tag ``"u"``, ``defs.averages.UNSTABLE``); ``base.ta(...,
unstable="EMA")`` sets ``talib.set_unstable_period`` around the reference call.

User-defined kinds (``featurestore.indicators.register``, contract in ``indicators/user/__init__.py``)
are not definitions here: they join ``registry.KINDS`` at registration, never ``ALL_DEFS`` or
``STATE_LAYOUTS``, and may not shadow or extend a kind defined here.

Tests: add a table to ``tests/test_indicators_<family>.py`` using ``tests/indicator_harness.py``::

    from indicator_harness import Row, run_row_tests
    ROWS = [Row("ema", [{"period": 2}, {"period": 30}, {"period": 10, "unstable": 5}])]
    test_row = run_row_tests(ROWS)    # one parametrized test per (row, param set)

The harness checks, for each param set: bit-for-bit equality with ``talib_ref`` on synthetic edge
cases (leading/interior/trailing NaN and inf, all-NaN, every length 1..lookback+3, flat series,
ties) and on the real OHLCV series; lookback == ``talib.abstract`` lookback; batched ==
per symbol; incremental at every split point and bar by bar == full (state through bytes);
a hypothesis property of random chunkings. Outputs that have no TA-Lib function (transforms)
give ``Row(..., oracle=fn)`` with ``fn(data: dict[str, ndarray], params) -> tuple[ndarray, ...]``
written in the test with numpy/pandas, and ``exact=False`` for a 1e-12 relative tolerance.
"""

from __future__ import annotations

from featurestore.indicators.base import IndicatorDef
from featurestore.indicators.defs import (
    averages,
    directional,
    momentum,
    transforms,
    volatility,
    volume,
)

__all__ = ["ALL_DEFS", "FAMILIES", "STATE_LAYOUTS"]

FAMILIES = (averages, momentum, directional, volatility, volume, transforms)


def _collect() -> tuple[tuple[IndicatorDef, ...], dict[str, tuple[str, ...]]]:
    defs: list[IndicatorDef] = []
    layouts: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for fam in FAMILIES:
        for d in fam.DEFS:
            if d.kind in seen:
                raise ImportError(f"indicator kind {d.kind!r} defined twice ({seen[d.kind]}, {fam.__name__})")
            seen[d.kind] = fam.__name__
            if d.kind not in fam.STATE_LAYOUTS:
                raise ImportError(f"{fam.__name__}: no STATE_LAYOUTS entry for {d.kind!r}")
            defs.append(d)
        for kind, layout in fam.STATE_LAYOUTS.items():
            if kind in layouts or seen.get(kind) != fam.__name__:
                raise ImportError(f"{fam.__name__}: STATE_LAYOUTS[{kind!r}] has no matching definition")
            layouts[kind] = layout
    return tuple(defs), layouts


#: Every built-in definition, in family order; ``STATE_LAYOUTS`` by kind.
ALL_DEFS, STATE_LAYOUTS = _collect()
