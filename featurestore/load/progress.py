"""The progress bar of the running load, so the file reader can say what happens after the data.

``FeatureStore._progress`` registers the ``load`` bar it creates; when the last chunk has been
read, :func:`finishing` fills the bar (CSV totals are estimates) and names the phases that follow
(features, commit, ANALYZE), which otherwise pass as silence. One bar per thread (a ContextVar).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

__all__ = ["FINISHING", "finishing", "register", "reset"]

FINISHING = "load: features, commit, ANALYZE"

_bar: ContextVar[Any] = ContextVar("featurestore_load_bar", default=None)


def register(bar: Any) -> None:
    """Remember ``bar`` (a tqdm bar) as this thread's load bar."""
    _bar.set(bar)


def reset() -> None:
    """Forget this thread's load bar (after the load returned)."""
    _bar.set(None)


def finishing(description: str = FINISHING) -> None:
    """Every row is read: show the bar full and say which phases the load is in now."""
    bar = _bar.get()
    if bar is None:
        return
    bar.total = bar.n
    bar.set_description(description, refresh=True)
