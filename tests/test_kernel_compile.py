"""Kernels with a matype parameter compile only the code of the matypes they are called with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import talib

from featurestore.indicators import compute_batch, parse_indicator

_FIRST_USE = r"""
import json, numpy as np
from featurestore.indicators import compute
from featurestore.indicators.kernels import ma
x = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 300))
out = {s: compute(s, x) for s in ("ma_30", "apo_12_26", "bbands_20_2_m1", "stochrsi")}
for s in ("stoch", "stochf"):
    compute(s, {"high": x + 1, "low": x - 1, "close": x})
blocks = {n: len(getattr(ma, n).signatures) for n in ("_wma", "_dema", "_tema", "_trima", "_kama", "_t3")}
print(json.dumps({"blocks": blocks, "ma_30": list(out["ma_30"].values())[0][-5:].tolist()}))
"""


def test_first_use_of_a_matype_compiles_no_other_matypes_block(tmp_path: Path) -> None:
    """MA/APO/BBANDS with SMA/EMA and STOCH/STOCHF/STOCHRSI with SMA in a fresh process (empty
    numba cache): none of the WMA, DEMA, TEMA, TRIMA, KAMA, T3 blocks is compiled (they were,
    inside a per-bar matype dispatch)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _FIRST_USE], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["blocks"] == dict.fromkeys(got["blocks"], 0), got["blocks"]
    x = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 300))
    assert np.array_equal(got["ma_30"], talib.MA(x, 30, 0)[-5:])


def test_matype_kernel_converts_other_argument_types() -> None:
    """float32 / strided inputs take the api's converting path through a per-matype kernel."""
    x = 100 + np.cumsum(np.random.default_rng(4).normal(0, 1, 2_000))
    offsets = np.array([0, x.size], dtype=np.int64)
    for arg in (x.astype(np.float32), np.repeat(x, 2)[::2]):  # float32; a strided view
        ref_in = np.ascontiguousarray(arg, dtype=np.float64)
        for name, ref in (("ma_10_3", talib.MA(ref_in, 10, 3)), ("apo_5_12_1", talib.APO(ref_in, 5, 12, 1)),
                          ("ppo_5_12_6", talib.PPO(ref_in, 5, 12, 6))):
            spec = parse_indicator(name)
            out, _ = compute_batch(spec, {"close": arg}, offsets)
            assert np.array_equal(out[spec.outputs[0]], ref, equal_nan=True), (name, arg.dtype)


_FRESH_MATYPE = """
import json, sys
import numpy as np
from featurestore.indicators import compute
specs = ["ma_30_3", "stoch_5_3_3", "stochrsi_14_5_3_dm1"]
x = 100 + np.cumsum(np.random.default_rng(5).normal(0, 1, 200))
hlc = {"high": x + 1.0, "low": x - 1.0, "close": x}
outs = {s: compute(s, hlc if s.startswith("stoch_") else x) for s in specs}
if sys.argv[1] == "fill":
    raise SystemExit(0)
from featurestore.indicators.kernels import averages, momentum_range
kernels = (averages.ma_run, momentum_range.stoch_run, momentum_range.stochrsi_run)
print(json.dumps({"registries": "numba.np.polynomial.polynomial_core" in sys.modules,
                  "hits": [sum(k.stats.cache_hits.values()) for k in kernels],
                  "misses": [sum(k.stats.cache_misses.values()) for k in kernels],
                  "cols": {s + ":" + c: list(v) for s, o in outs.items() for c, v in o.items()}}))
"""


def test_a_fresh_process_loads_cached_matype_variants_without_numbas_compile_setup(tmp_path: Path) -> None:
    """A MatypeKernel variant (MA/STOCH/STOCHRSI) in numba's disk cache loads in a fresh process
    without numba's registry set-up (as the single-signature kernels do), and computes TA-Lib's
    values."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", _FRESH_MATYPE, "fill"], env=env, check=True, capture_output=True,
                   text=True, timeout=600)
    r = subprocess.run([sys.executable, "-c", _FRESH_MATYPE, "load"], env=env, check=True, capture_output=True,
                       text=True, timeout=600)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["hits"] == [1, 1, 1] and got["misses"] == [0, 0, 0], got
    assert got["registries"] is False, got  # numba's typing/lowering registries were never imported
    x = 100 + np.cumsum(np.random.default_rng(5).normal(0, 1, 200))
    want = {"ma_30_3": (talib.MA(x, 30, 3),),
            "stoch_5_3_3": talib.STOCH(x + 1.0, x - 1.0, x, 5, 3, 0, 3, 0),
            "stochrsi_14_5_3_dm1": talib.STOCHRSI(x, 14, 5, 3, 1)}
    for spec, ref in want.items():
        cols = [np.array(v, dtype=float) for k, v in got["cols"].items() if k.split(":")[0] == spec]
        assert len(cols) == len(ref) and all(np.array_equal(a, b, equal_nan=True) for a, b in zip(cols, ref)), spec
