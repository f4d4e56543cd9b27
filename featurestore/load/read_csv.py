"""CSV files: typed streaming reads with pyarrow; errors name the file and, for a bad value, its row."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from featurestore.errors import ValidationError
from featurestore.load.columns import _resolve_columns
from featurestore.load.rules import REQUIRED, Fix, Hint, LoadInputError
from featurestore.load.stream import validate_stream


def _source_names(
    target: str, column_map: Mapping[str, str | None] | None
) -> list[str]:
    """Source column names that end up as ``target`` (for typing CSV columns before reading)."""
    mapping = column_map or {}
    names = [src for src, dst in mapping.items() if dst == target]
    if target not in mapping:
        names.append(target)
    return names


def _csv_reader(
    path: Path,
    *,
    chunk_rows: int,
    column_map: Mapping[str, str | None] | None,
    extras: tuple[str, ...],
    delimiter: str,
    encoding: str,
    numbers_as_text: bool = False,
) -> pa_csv.CSVStreamingReader:
    float_type = pa.string() if numbers_as_text else pa.float64()
    types: dict[str, pa.DataType] = {}
    for target in (*REQUIRED, *extras):
        typ = pa.string() if target in ("symbol", "ts") else float_type
        for name in _source_names(target, column_map):
            types[name] = typ
    for name, dst in (column_map or {}).items():
        if dst is None:
            types[name] = pa.string()  # dropped: never let type inference fail on it
    # Estimate bytes per row from the start of the file so one block is about one chunk.
    with pa.input_stream(str(path), compression="detect") as stream:
        head = stream.read(1 << 16)
    per_row = max(len(head) / max(head.count(b"\n"), 1), 8.0)
    block = int(min(max(per_row * chunk_rows * 1.05, 1 << 16), 1 << 28))
    return pa_csv.open_csv(
        pa.input_stream(str(path), compression="detect"),
        read_options=pa_csv.ReadOptions(block_size=block, encoding=encoding),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter),
        convert_options=pa_csv.ConvertOptions(
            column_types=types,
            strings_can_be_null=True,
            null_values=[""],  # only an empty field is missing: "NA" may be a symbol
            true_values=["true"],
            false_values=["false"],
        ),
    )



def _csv_error(exc: BaseException, source: str, encoding: str) -> ValidationError:
    text = str(exc)
    if "invalid UTF8" in text or "UTF-8" in text or isinstance(exc, UnicodeDecodeError):
        return LoadInputError(
            f"file is not valid {encoding} text ({text.splitlines()[0]})",
            hints=[Hint("pass", (Fix("encoding", "latin-1"),), " (or the file's encoding)")],
            source=source,
        )
    if "Empty CSV file" in text:
        return ValidationError("file is empty (no header)", source=source)
    return ValidationError(f"cannot read CSV: {text.splitlines()[0] if text else type(exc).__name__}", source=source)



class _CsvConversionError(Exception):
    """Internal: pyarrow rejected a CSV value while converting a column to float64."""


def _csv_batches(
    path: Path,
    chunk_rows: int,
    extras: tuple[str, ...],
    column_map: Mapping[str, str | None] | None,
    symbol: str | None,
    delimiter: str,
    encoding: str,
    numbers_as_text: bool = False,
) -> Iterator[pa.RecordBatch]:
    source = str(path)
    try:
        reader = _csv_reader(
            path,
            chunk_rows=chunk_rows,
            column_map=column_map,
            extras=extras,
            delimiter=delimiter,
            encoding=encoding,
            numbers_as_text=numbers_as_text,
        )
    except pa.ArrowInvalid as exc:  # open_csv already converts the first block
        if "conversion error to double" in str(exc):
            raise _CsvConversionError(str(exc)) from exc
        raise _csv_error(exc, source, encoding) from exc
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise _csv_error(exc, source, encoding) from exc
    try:
        _resolve_columns(reader.schema.names, source=source, extras=extras, column_map=column_map, symbol=symbol)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                if "conversion error to double" in str(exc):
                    raise _CsvConversionError(str(exc)) from exc
                raise _csv_error(exc, source, encoding) from exc
            except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
                raise _csv_error(exc, source, encoding) from exc
            yield batch
    finally:
        reader.close()


def _locate_csv_error(
    path: Path,
    chunk_rows: int,
    extras: tuple[str, ...],
    column_map: Mapping[str, str | None] | None,
    delimiter: str,
    encoding: str,
    options: dict[str, Any],
) -> None:
    """Error path: validate the file again with number columns read as text; raises the first error."""
    batches = _csv_batches(
        path, chunk_rows, extras, column_map, options["symbol"], delimiter, encoding, numbers_as_text=True
    )
    for _ in validate_stream(batches, chunk_rows, str(path), options):
        pass
