"""The indicator engine's foundation: families assembled into one registry, the generic harness
run over the seven original kinds (+ TRANGE), TA-Lib's unstable period for EMA, the tagged
naming rule, and numba's disk cache across processes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import talib
from indicator_harness import Row, assert_bits, make_tests

from featurestore.errors import IndicatorError
from featurestore.indicators import REGISTRY, STATE_LAYOUTS, compute, indicator, parse_indicator, parse_output_name

ROWS = [
    Row("sma", [{"period": 1}, {"period": 2}, {"period": 5}, {"period": 30}, {"period": 200}]),
    Row("ema", [
        {"period": 1}, {"period": 2}, {"period": 30}, {"period": 200},
        {"period": 1, "unstable": 3}, {"period": 2, "unstable": 1}, {"period": 10, "unstable": 5},
        {"period": 30, "unstable": 50},
    ]),
    Row("rsi", [{"period": 2}, {"period": 14}, {"period": 50}]),
    Row("macd", [{"fast": 12, "slow": 26, "signal": 9}, {"fast": 26, "slow": 12, "signal": 9},
                 {"fast": 2, "slow": 3, "signal": 1}, {"fast": 5, "slow": 35, "signal": 5}]),
    Row("bbands", [{"period": 2, "nbdevup": 2, "nbdevdn": 2}, {"period": 20, "nbdevup": 2.5, "nbdevdn": 1.5},
                   {"period": 5, "nbdevup": 1, "nbdevdn": 2}]),
    Row("atr", [{"period": 1}, {"period": 3}, {"period": 14}]),
    Row("adx", [{"period": 2}, {"period": 14}]),
    Row("trange", [{}]),
]

globals().update(make_tests(ROWS))


def test_every_kind_is_in_a_harness_table() -> None:
    """Every registered kind is checked by the harness: here (the original eight) or in its family's test file."""
    import importlib

    tables = {r.kind for r in ROWS}
    for path in sorted(Path(__file__).parent.glob("test_ind_*.py")):
        module = importlib.import_module(path.stem)
        tables |= {r.kind for r in getattr(module, "ROWS", [])}
        tables |= {r.kind for name in dir(module) if name.endswith("_ROWS") for r in getattr(module, name)}
    assert set(REGISTRY) <= tables, sorted(set(REGISTRY) - tables)


# -------------------------------------------------------------------------- registry assembly
def test_families_assemble_registry_and_layouts() -> None:
    from featurestore.indicators import defs

    kinds = [d.kind for fam in defs.FAMILIES for d in fam.DEFS]
    assert len(kinds) == len(set(kinds)) == len(REGISTRY)
    assert set(STATE_LAYOUTS) == set(REGISTRY)
    for kind, d in REGISTRY.items():
        module, _, func = d.kernel.partition(".")
        # a module of the kernels package (a family's, or a shared one such as mama.py)
        assert importlib.util.find_spec(f"featurestore.indicators.kernels.{module}") is not None, d.kernel
        assert func.endswith("_run"), d.kernel
        assert STATE_LAYOUTS[kind][0] == "count"


def test_duplicate_kind_fails_at_import() -> None:
    # A second family defining 'sma': re-import the assembling package after patching one.
    code = (
        "import sys, importlib; import featurestore.indicators.defs.averages as a; "
        "import featurestore.indicators.defs.volume as v; v.DEFS = (a.DEFS[0],); "
        "v.STATE_LAYOUTS = {'sma': ('count',)}; sys.modules.pop('featurestore.indicators.defs'); "
        "importlib.import_module('featurestore.indicators.defs')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "'sma' defined twice" in res.stderr, res.stderr[-500:]


def test_defs_import_no_numba() -> None:
    code = (
        "import sys, featurestore, featurestore.indicators.defs as d, featurestore.indicators as fi; "
        "[fi.parse_indicator(k).outputs for k in fi.REGISTRY]; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite', 'talib', 'pandas') "
        "or m.startswith('featurestore.indicators.kernels')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ----------------------------------------------------------------------- unstable period, names
@pytest.mark.parametrize(("text", "name", "lookback"), [
    ("ema_30", "ema_30", 29), ("ema_30_u0", "ema_30", 29), ("ema_30_u50", "ema_30_u50", 79),
    ("ema_u5", "ema_30_u5", 34), ("ema_u5_10", "ema_10_u5", 14),
])
def test_unstable_names(text: str, name: str, lookback: int) -> None:
    spec = parse_indicator(text)
    assert spec.name == name and spec.lookback == lookback
    assert parse_output_name(name) == (spec, "")
    assert spec == indicator("ema", period=spec.p["period"], unstable=spec.p["unstable"])


def test_unstable_default_keeps_stored_form() -> None:
    """A spec at the default unstable period serializes as before the parameter existed
    (views hash ``to_dict``), and the old form loads."""
    assert parse_indicator("ema_30").to_dict() == {"kind": "ema", "params": {"period": 30}}
    assert parse_indicator("ema_30_u7").to_dict() == {"kind": "ema", "params": {"period": 30, "unstable": 7}}
    assert type(parse_indicator("ema_30")).from_dict({"kind": "ema", "params": {"period": 30}}) == parse_indicator("ema_30")


def test_unstable_bad_values() -> None:
    for text in ("ema_30_u", "ema_30_u1p5", "ema_30_u5_u6", "ema_30_x5", "sma_20_u5"):
        with pytest.raises(IndicatorError):
            parse_indicator(text)
    with pytest.raises(IndicatorError, match="unstable"):
        indicator("ema", period=5, unstable=-1)


def test_unstable_ema_matches_talib_setting_directly() -> None:
    """The oracle in the table goes through ``talib_ref``; this one calls talib itself."""
    x = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 500))
    for n, u in ((10, 5), (30, 50), (2, 0), (1, 4)):
        talib.set_unstable_period("EMA", u)
        try:
            ref = talib.EMA(x, n)
        finally:
            talib.set_unstable_period("EMA", 0)
        got = compute(f"ema_{n}_u{u}", x)
        assert isinstance(got, dict)
        assert_bits(next(iter(got.values())), ref, f"ema {n} u{u}")


# ------------------------------------------------------------------------------ disk cache
_CACHE_SCRIPT = r"""
import json, numpy as np
from featurestore.indicators import compute, kernels
x = np.linspace(1.0, 2.0, 64)
data = {"high": x + 1, "low": x - 1, "close": x}
for s in ("sma_5", "ema_5_u2", "macd", "bbands", "rsi", "atr", "adx", "trange"):
    compute(s, data)
from featurestore.indicators.kernels import averages, directional, momentum, volatility
ks = [averages.sma_run, averages.ema_run, averages.bbands_run, momentum.rsi_run, momentum.macd_run,
      volatility.atr_run, volatility.trange_run, directional.adx_run]
print(json.dumps({k.__name__: [sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values())] for k in ks}))
"""


def test_second_process_loads_kernels_from_disk_cache(tmp_path: Path) -> None:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [
        json.loads(subprocess.run([sys.executable, "-c", _CACHE_SCRIPT], env=env, check=True,
                                  capture_output=True, text=True, timeout=600).stdout)
        for _ in range(2)
    ]
    assert all(hits == 0 and misses == 1 for hits, misses in runs[0].values()), runs[0]
    assert all(hits == 1 and misses == 0 for hits, misses in runs[1].values()), runs[1]


# --------------------------------------------------------------------------- building blocks
def test_common_building_blocks_reproduce_talib() -> None:
    """sma_step, ema_seed/ema_step and wilder_step, driven by plain loops here, equal TA-Lib."""
    from numba import njit

    from featurestore.indicators.kernels.common import ema_seed, ema_step, sma_step, wilder_step

    @njit
    def sma(x, n):  # type: ignore[no-untyped-def]
        out = np.full(x.size, np.nan)
        t = 0.0
        for i in range(n - 1):
            t += x[i]
        for i in range(n - 1, x.size):
            out[i], t = sma_step(t, x[i], x[i - n + 1], n)
        return out

    @njit
    def ema(x, n):  # type: ignore[no-untyped-def]
        out = np.full(x.size, np.nan)
        s = 0.0
        for i in range(n):
            s += x[i]
        e = ema_seed(s, n)
        out[n - 1] = e
        k = 2.0 / (n + 1)
        for i in range(n, x.size):
            e = ema_step(x[i], e, k)
            out[i] = e
        return out

    @njit
    def rsi(x, n):  # type: ignore[no-untyped-def]
        out = np.full(x.size, np.nan)
        g_avg = 0.0
        l_avg = 0.0
        for j in range(1, n + 1):
            d = x[j] - x[j - 1]
            g = d if d > 0 else 0.0
            g_avg += g
            l_avg += g - d
        g_avg *= 1.0 / n
        l_avg *= 1.0 / n
        out[n] = (g_avg / (g_avg + l_avg)) * 100.0
        for i in range(n + 1, x.size):
            d = x[i] - x[i - 1]
            g = d if d > 0 else 0.0
            g_avg = wilder_step(g_avg, g, n)
            l_avg = wilder_step(l_avg, g - d, n)
            out[i] = (g_avg / (g_avg + l_avg)) * 100.0
        return out

    x = 100 + np.cumsum(np.random.default_rng(5).normal(0, 1, 20_000))
    for n in (2, 14, 30):
        assert_bits(sma(x, n), talib.SMA(x, n), f"sma {n}")
        assert_bits(ema(x, n), talib.EMA(x, n), f"ema {n}")
        assert_bits(rsi(x, n), talib.RSI(x, n), f"rsi {n}")


def test_disk_cache_is_dropped_when_any_kernel_module_changes(tmp_path: Path) -> None:
    """numba keys a kernel's cache on its own file; a changed helper module must not leave stale machine code."""
    from featurestore.indicators.kernels import common

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    run = [sys.executable, "-c", "import numpy as np; from featurestore.indicators import compute; compute('sma_3', np.arange(9.0))"]

    def first_use() -> None:
        done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr

    first_use()
    (marker,) = tmp_path.rglob(common.CACHE_MARKER)
    assert marker.read_text() == common._sources_digest()
    cache_dir = marker.parent
    # the same sources: nothing is dropped
    keep = cache_dir / "averages.sentinel-1.py311.nbi"
    keep.write_bytes(b"")
    first_use()
    assert keep.exists()
    # sources that differ from the marker (an upgrade, an edited helper): every kernel cache file goes
    marker.write_text("0" * 64)
    first_use()
    assert not keep.exists()
    assert marker.read_text() == common._sources_digest()
    assert any(p.suffix == ".nbi" and p.name.startswith("averages.sma_run") for p in cache_dir.iterdir())
