"""featurestore: an embedded, PostgreSQL-backed feature store for time-series market data."""

from __future__ import annotations

from featurestore.errors import (
    ConfigError,
    ConnectionError,
    FeatureStoreError,
    IndicatorError,
    NotFoundError,
    PoolTimeoutError,
    SchemaError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConnectionError",
    "FeatureStoreError",
    "IndicatorError",
    "NotFoundError",
    "PoolTimeoutError",
    "SchemaError",
    "ValidationError",
    "__version__",
]
