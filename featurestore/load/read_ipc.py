"""Feather / Arrow IPC files (file or stream format), memory-mapped, one record batch at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as pa_ipc

from featurestore.errors import ValidationError
from featurestore.load.columns import _resolve_columns


def _ipc_batches(
    path: Path,
    extras: tuple[str, ...],
    column_map: Mapping[str, str | None] | None,
    symbol: str | None,
) -> Iterator[pa.RecordBatch]:
    source = str(path)
    try:
        mapped = pa.memory_map(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise ValidationError(f"cannot open file: {exc}", source=source) from exc
    with mapped:
        try:
            reader: Any = pa_ipc.open_file(mapped)
            count = reader.num_record_batches
            batches: Iterable[pa.RecordBatch] = (reader.get_batch(i) for i in range(count))
        except pa.ArrowInvalid:
            try:
                mapped.seek(0)
                reader = pa_ipc.open_stream(mapped)
                batches = reader
            except (pa.ArrowException, OSError) as exc:
                raise ValidationError(
                    f"not a readable Feather/Arrow IPC file (Feather v1 is not supported): {exc}",
                    source=source,
                ) from exc
        names = reader.schema.names
        _resolve_columns(names, source=source, extras=extras, column_map=column_map, symbol=symbol)
        dropped = {k for k, v in (column_map or {}).items() if v is None}
        keep = [i for i, n in enumerate(names) if n not in dropped]
        try:
            for batch in batches:
                yield batch.select(keep)
        except (pa.ArrowException, OSError) as exc:
            raise ValidationError(f"corrupt Feather/Arrow IPC file: {exc}", source=source) from exc



def ipc_rows(path: Path) -> int | None:
    """Rows in an Arrow IPC *file* from its batches' metadata; None for the stream format."""
    try:
        with pa.memory_map(str(path)) as mapped:
            return int(pa_ipc.open_file(mapped).count_rows())
    except (pa.ArrowException, OSError):
        return None
