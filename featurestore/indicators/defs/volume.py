"""Volume-based indicators: OBV, AD, ADOSC (kernels in ``kernels/volume.py``).

Accepted ranges are TA-Lib 0.8's: ADOSC fast and slow periods 2..100000 (defaults 3 and 10);
OBV and AD take no parameters. See ``defs/__init__.py`` for the contract.

One deliberate difference from TA-Lib: on a series with NO bar where every input is non-NaN,
TA-Lib's begidx rule runs the function on the last bar alone, so OBV gives that bar's volume
and AD gives 0.0 there; the store gives NaN, because a value that a later valid bar would
retract cannot be kept incremental. Every other series is bit for bit TA-Lib's.
"""

from __future__ import annotations

from featurestore.indicators.base import MAX_PERIOD, IndicatorDef, ParamDef, ta

HLCV = ("high", "low", "close", "volume")

DEFS: tuple[IndicatorDef, ...] = (
    IndicatorDef(
        "obv", "On-balance volume", ("close", "volume"), (), ("",), "volume.obv_run", "OBV",
        lookback=lambda p: 0,
        state_len=lambda p: 3,
        talib_ref=ta("OBV", inputs=("close", "volume")),
    ),
    IndicatorDef(
        "ad", "Chaikin accumulation/distribution line", HLCV, (), ("",), "volume.ad_run", "AD",
        lookback=lambda p: 0,
        state_len=lambda p: 2,
        talib_ref=ta("AD", inputs=HLCV),
    ),
    IndicatorDef(
        # fast > slow is TA-Lib's too (not swapped, unlike MACD): the output changes sign.
        "adosc", "Chaikin A/D oscillator (EMAs seeded with the first A/D value)", HLCV,
        (
            ParamDef("fast", int, 3, 2, MAX_PERIOD, ("fastperiod",)),
            ParamDef("slow", int, 10, 2, MAX_PERIOD, ("slowperiod",)),
        ),
        ("",), "volume.adosc_run", "ADOSC",
        lookback=lambda p: max(int(p["fast"]), int(p["slow"])) - 1,
        state_len=lambda p: 4,
        talib_ref=ta("ADOSC", "fast", "slow", inputs=HLCV),
    ),
)

STATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "obv": ("count", "obv", "prev_close"),
    "ad": ("count", "ad"),
    "adosc": ("count", "ad", "fast_ema", "slow_ema"),
}
