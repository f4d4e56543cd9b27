"""featurestore: an embedded, PostgreSQL-backed feature store for time-series market data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featurestore.errors import (
    BackfillInterrupted,
    ConfigError,
    ConnectionError,
    DatabaseError,
    DeadlockError,
    FeatureStoreError,
    HistoryError,
    IndicatorError,
    LockTimeoutError,
    NotFoundError,
    PoolTimeoutError,
    QueryCanceledError,
    RateLimitedError,
    ResourceError,
    SchemaError,
    ValidationError,
)

if TYPE_CHECKING:
    from featurestore.client import FeatureStore
    from featurestore.client.aio import AsyncFeatureStore
    from featurestore.history import BarHistory, CompactResult
    from featurestore.segments import CompressResult

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # FeatureStore pulls in SQLAlchemy, Alembic and pandas: import it on first use so that
    # `import featurestore` stays fast.
    if name == "FeatureStore":
        from featurestore.client import FeatureStore

        return FeatureStore
    if name == "AsyncFeatureStore":
        from featurestore.client.aio import AsyncFeatureStore

        return AsyncFeatureStore
    if name in ("BarHistory", "CompactResult"):  # result types of store.history / compact_history
        from featurestore import history

        return getattr(history, name)
    if name == "CompressResult":  # result type of compress_history
        from featurestore import segments

        return segments.CompressResult
    raise AttributeError(f"module 'featurestore' has no attribute {name!r}")


__all__ = [
    "BackfillInterrupted",
    "FeatureStore",
    "AsyncFeatureStore",
    "RateLimitedError",
    "BarHistory",
    "CompactResult",
    "CompressResult",
    "ConfigError",
    "ConnectionError",
    "DatabaseError",
    "DeadlockError",
    "FeatureStoreError",
    "HistoryError",
    "IndicatorError",
    "LockTimeoutError",
    "NotFoundError",
    "PoolTimeoutError",
    "QueryCanceledError",
    "ResourceError",
    "SchemaError",
    "ValidationError",
    "__version__",
]
