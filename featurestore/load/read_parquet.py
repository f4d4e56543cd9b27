"""Parquet files: streamed in row batches; the row count comes from the file's metadata."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import ValidationError
from featurestore.load.columns import _resolve_columns


def _parquet_batches(
    path: Path,
    chunk_rows: int,
    extras: tuple[str, ...],
    column_map: Mapping[str, str | None] | None,
    symbol: str | None,
) -> Iterator[pa.RecordBatch]:
    source = str(path)
    try:
        file = pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise ValidationError(f"not a readable Parquet file: {exc}", source=source) from exc
    names = file.schema_arrow.names
    _resolve_columns(names, source=source, extras=extras, column_map=column_map, symbol=symbol)
    dropped = {k for k, v in (column_map or {}).items() if v is None}
    keep = [n for n in names if n not in dropped]
    try:
        with file:
            yield from file.iter_batches(batch_size=chunk_rows, columns=keep, use_pandas_metadata=False)
    except (pa.ArrowException, OSError) as exc:
        raise ValidationError(f"corrupt Parquet file: {exc}", source=source) from exc



def parquet_rows(path: Path) -> int | None:
    """Rows in a Parquet file, from its footer (no data read); None if it cannot be read."""
    try:
        return int(pq.ParquetFile(str(path)).metadata.num_rows)
    except (pa.ArrowException, OSError):
        return None
