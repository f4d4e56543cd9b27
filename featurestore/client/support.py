"""[client] Small helpers of the façade: cache-key normalisation, progress bars, peak RSS."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd



def _peak_rss_bytes(proc: Any) -> int:
    """This process's own peak resident set size, in bytes (0 when the platform tells nothing).

    Linux: ``VmHWM`` from /proc/self/status, which exec resets; ``ru_maxrss`` there is in KiB
    and carries the parent's peak across fork+exec, so a small child would report its parent's
    size. macOS: ``ru_maxrss`` is already in bytes. Windows: psutil's ``peak_wset``.
    """
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1]) * 1024  # "VmHWM:  123456 kB"
        except (OSError, ValueError, IndexError):
            pass
    peak = getattr(proc.memory_info(), "peak_wset", None)
    if peak:
        return int(peak)
    try:
        import resource
    except ImportError:  # Windows without peak_wset
        return 0
    maxrss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    if sys.platform.startswith("linux"):  # /proc unreadable: the inherited figure, in KiB
        return maxrss * 1024
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # the BSDs report KiB


def _maybe_downcast(enabled: bool, fn: Any) -> Any:
    if not enabled:
        return fn
    from featurestore.read import downcast

    return lambda: downcast(fn())


def _syms(symbols: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(symbols, str):
        return (symbols,)
    return tuple(symbols)


def _tkey(value: Any) -> Any:
    """A hashable, normalized form of a time argument for cache keys (the UTC instant, in ns)."""
    if value is None:
        return None
    pd = sys.modules.get("pandas")
    if pd is not None and type(value) is pd.Timestamp and value.tzinfo is not None:
        return value.value  # tz-aware: already the UTC instant in ns (what `_utc` would give)
    from featurestore.errors import FeatureStoreError
    from featurestore.read import _utc

    try:
        return _utc(value, "time").value
    except (FeatureStoreError, ValueError, TypeError):
        return ("invalid", repr(value))  # the read itself raises the proper error


def _ckey(columns: str | Sequence[str] | None) -> Any:
    if columns is None or isinstance(columns, str):
        return columns
    return tuple(columns)


def _frame_digest(frame: pd.DataFrame) -> str:
    """A content hash of a DataFrame (values, index, column names and dtypes) for cache keys."""
    import hashlib

    import pandas as pd

    h = hashlib.blake2b(digest_size=16)
    h.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


class _NoProgress:
    """The silent stand-in for a progress bar."""

    def update(self, n: int) -> None:
        pass

    def phase(self, name: str) -> None:
        pass

    def features(self, done: int, more_total: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Bar:
    """A tqdm bar that can also name the phase a load is in once every row is read.

    After the last chunk the load still computes features, commits and may ANALYZE; without a
    phase name those pass as silence. Naming a phase fills the bar (file totals are estimates).
    """

    def __init__(self, total: int | None, desc: str, unit: str) -> None:
        from tqdm import tqdm

        self.desc = desc
        self.in_features = False
        self.tqdm = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False, file=sys.stderr)

    def update(self, n: int) -> None:
        self.tqdm.update(n)

    def phase(self, name: str) -> None:
        self.tqdm.total = self.tqdm.n
        self.tqdm.set_description(f"{self.desc}: {name}", refresh=True)

    def features(self, done: int, more_total: int) -> None:
        """The features phase's own count (``write_features(progress=...)``): the bar restarts at 0
        with the rows the features will cover as its total, so its rate and ETA are the phase's."""
        if not self.in_features:  # the first call brings the plan: the bar restarts with it
            self.in_features = True
            self.tqdm.set_description(f"{self.desc}: features", refresh=False)
            self.tqdm.reset(total=max(more_total, done))
        elif more_total:
            self.tqdm.total = max((self.tqdm.total or 0) + more_total, self.tqdm.n + done)
        if done:
            self.tqdm.update(done)
        if not done or self.tqdm.n >= (self.tqdm.total or 0):  # a new total, or the end: draw it now
            self.tqdm.refresh()

    def close(self) -> None:
        self.tqdm.close()


def _progress(enabled: bool | None, *, total: int | None, desc: str, unit: str) -> _Bar | _NoProgress:
    """A tqdm bar on a terminal (or when asked for), else a silent stand-in."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _NoProgress()
    return _Bar(total, desc, unit)
