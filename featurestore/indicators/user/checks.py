"""User kernels: the checks registration runs (the function alone, and incremental == full)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from featurestore.indicators.base import (
    Arrays,
    Number,
    UserKernelError,
)
from featurestore.indicators.user.declare import NAN_CODE, _compile_error, _is_numba_error


# ------------------------------------------------------------------------------ checks
def _synthetic(n: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """A small deterministic OHLCV random walk (valid bars, 0.01 ticks, some ties)."""
    rng = np.random.default_rng(20240612)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 2)
    open_ = np.round(close * (1 + rng.normal(0, 0.003, n)), 2)
    high = np.maximum(open_, close) + np.round(np.abs(rng.normal(0, 0.3, n)), 2)
    low = np.minimum(open_, close) - np.round(np.abs(rng.normal(0, 0.3, n)), 2)
    vol = rng.integers(100, 10_000, n).astype(float)
    cols = {"open": open_, "high": high, "low": low, "close": close, "volume": vol}
    out = {}
    for k in names:
        a = np.ascontiguousarray(cols[k])
        a.setflags(write=False)
        out[k] = a
    return out


def _check_arity(kind: str, result: Any, n_out: int, what: str) -> None:
    scalar = (float, int, np.floating, np.integer)
    if n_out == 1:
        if isinstance(result, bool) or not isinstance(result, scalar):
            raise UserKernelError(f"{kind}: {what} must return one float (outputs has 1 entry), got {result!r}")
    elif not (
        isinstance(result, tuple) and len(result) == n_out
        and all(isinstance(v, scalar) and not isinstance(v, bool) for v in result)
    ):
        raise UserKernelError(f"{kind}: {what} must return a tuple of {n_out} floats (one per output), got {result!r}")


def _probe(kind: str, form: str, fn: Any, init: Any, data: Arrays, inputs: Sequence[str],
           values: tuple[Number, ...], window: int, width: int, n_out: int) -> None:
    """Call the user's functions once from Python: compile errors and arity, with clear messages."""
    try:
        if form == "windowed":
            res = fn(*(data[k][:window] for k in inputs), *values)
        else:
            u = np.zeros(max(width, 0))
            if init is not None:
                init(u, *values)
            res = fn(u, 0, *(float(data[k][0]) for k in inputs), *values)
    except UserKernelError:
        raise
    except Exception as exc:
        what = "the function" if form == "windowed" else "step/init"
        if _is_numba_error(exc):
            raise _compile_error(kind, what, exc) from exc
        raise UserKernelError(
            f"{kind}: {what} raised {type(exc).__name__}: {exc} on a synthetic series (parameters {values!r}); "
            "numba raises on a float division by zero: guard it, or return np.nan with allow_nan=True"
        ) from exc
    _check_arity(kind, res, n_out, "the window function" if form == "windowed" else "step")


def _self_test(kind: str, kernel: Any, data: Arrays, inputs: Sequence[str], values: tuple[Number, ...],
               width: int, lookback: int, n_out: int, outputs: Sequence[str], diagnose: Callable[[], None]) -> None:
    """Full run == every two-chunk split == bar by bar, bit for bit, with guard cells after the
    state row (a step writing past its declared width is caught); NaN contract on finite data.
    ``diagnose`` names the user's function when the kernel raises."""
    n = data[inputs[0]].size
    arrays = [data[k] for k in inputs]

    def run(lo: int, hi: int, st_in: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        buf = np.full(width + 8, 7.25e300)
        st = buf[:width].reshape(1, width)
        outs = [np.empty(hi - lo) for _ in range(n_out)]
        off = np.array([0, hi - lo], dtype=np.int64)
        try:
            bad = kernel(*(a[lo:hi] for a in arrays), off, *values, st_in, st, *outs)
        except Exception as exc:
            diagnose()
            raise UserKernelError(
                f"{kind}: the kernel raised {type(exc).__name__}: {exc} on a synthetic series (parameters "
                f"{values!r}); numba raises on a float division by zero: guard it"
            ) from exc
        if bad >= NAN_CODE and bad < 2 * NAN_CODE:
            bar, o = divmod(bad - NAN_CODE, 64)
            raise UserKernelError(
                f"{kind}: output {outputs[o] or 'main'!r} is NaN or inf at bar {lo + bar} of a finite synthetic series "
                f"(parameters {values!r}, lookback {lookback}); outputs after the lookback must be finite, or "
                "register with allow_nan=True"
            )
        if bad != 0:
            raise UserKernelError(f"{kind}: the kernel returned code {bad} on a valid synthetic call")
        if not np.all(buf[width:] == 7.25e300):
            raise UserKernelError(f"{kind}: the function writes past the end of its declared state (width {width - 2})")
        return outs, st.copy()

    zero = np.zeros((1, width))
    full, st_full = run(0, n, zero)
    for o, out in enumerate(full):
        if not np.all(np.isnan(out[: min(lookback, n)])):
            raise AssertionError(f"{kind}: engine wrote a value inside the lookback")  # engine bug, not user's
        del o
    splits = list(range(1, n)) if n <= 64 else sorted({*range(1, 16), *range(n - 31, n), *np.linspace(1, n - 1, 20).astype(int).tolist()})
    for k in splits:
        a, st = run(0, k, zero)
        b, st2 = run(k, n, st)
        for o in range(n_out):
            if not np.array_equal(np.concatenate([a[o], b[o]]), full[o], equal_nan=True):
                j = int(np.flatnonzero(~((np.concatenate([a[o], b[o]]) == full[o]) | (np.isnan(full[o]) & np.isnan(np.concatenate([a[o], b[o]])))))[0])
                raise UserKernelError(
                    f"{kind}: incremental != full: run on bars [0, {k}) then [{k}, {n}) gives output "
                    f"{outputs[o] or 'main'!r} {np.concatenate([a[o], b[o]])[j]!r} at bar {j}, a full run "
                    f"{full[o][j]!r}: the state does not hold everything the next bars depend on"
                )
        if not np.array_equal(st2, st_full):
            raise UserKernelError(
                f"{kind}: the state after bars [0, {k}) then [{k}, {n}) differs from the state after one run: "
                "it must depend only on the bars seen"
            )


