"""Record batches -> validated chunks of exactly ``chunk_rows`` rows, numbered as file data rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from featurestore.load.chunk import BarChunk
from featurestore.load.contract import _validate


def _rebatch(batches: Iterable[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.Table]:
    """Re-cut a stream of record batches into tables of exactly ``chunk_rows`` (the last fewer)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        while count >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)



def validate_stream(batches: Iterable[pa.RecordBatch], chunk_rows: int, source: str, options: dict[str, Any]) -> Iterator[BarChunk]:
    """Validate a file's batches chunk by chunk; rows are the file's 1-based data rows."""
    row = 1
    for table in _rebatch(batches, chunk_rows):
        chunk = _validate(table, source=source, row_offset=row, in_file=True, **options)
        row += len(chunk)
        yield chunk
