"""[export] Stored bars (and a view's features) -> one Parquet, Feather or CSV file, streamed.

The opposite of :mod:`featurestore.load`: symbols are read in batches through the uncached
:class:`~featurestore.read.Reader` (ADBC into Arrow) and appended to one file with pyarrow's
incremental writers, so memory stays bounded by about two batches whatever the export's size,
and the next batch is read while the current one is written.

What the file holds
===================

* Columns ``symbol`` (string), ``ts`` (``timestamp[us, tz=UTC]``; in CSV an ISO 8601 text with a
  ``Z`` suffix such as ``2024-01-31 00:00:00.000000Z``), ``open``, ``high``, ``low``, ``close``,
  ``volume`` (float64), then, with ``view=``, the view's feature columns (float64, NaN where the
  indicator has no value yet), or the ones picked with ``columns=``.
* Rows sorted by symbol, then ts; the same content as ``get_bars`` / ``get_features(...,
  include_bars=True)`` over the same symbols and range.
* Parquet and Feather files carry schema metadata ``featurestore`` (JSON: view, version, start,
  end) for consumers; :func:`featurestore.load.read_chunks` ignores it.
* One state of the store: every batch is read in one REPEATABLE READ snapshot taken when the
  export starts (:meth:`featurestore.read.Reader.snapshot`), so a load committing meanwhile is in
  none of the file or, for a later export, in all of it; never in some symbols only. With
  ``view=`` and no ``version=``, the view's newest *ready* version at that moment is exported.

Two kinds of export
===================

* **Bars** (``view=None``) round-trip: ``FeatureStore.load(path)`` into another store gives the
  same bars, and that store recomputes every registered view's indicators on load.
* **Features** (``view="name"``) are for consumers (pandas, Polars, Spark, DuckDB...). Loading one
  back is rejected, because indicator outputs are not columns a load accepts (see the input
  contract in :mod:`featurestore.load`); the one exception is a view's *user* columns: an export
  with ``columns=<the view's user columns>`` loads into a store where that view exists.

The file appears atomically: it is written under a temporary name beside ``path`` and renamed
when complete, so a failed export never leaves a truncated file behind.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurestore.errors import ConfigError

if TYPE_CHECKING:
    import psycopg

    from featurestore.client import FeatureStore

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "DEFAULT_CHUNK_SYMBOLS",
    "DEFAULT_COMPRESSION",
    "EXPORT_FORMATS",
    "ExportProgress",
    "ExportResult",
    "export",
    "export_format",
]

# Symbols read per query. A batch is one range read (entity_id = ANY(...)): 200 symbols x 2,500
# daily bars is 500k rows, ~40 MB of bars, where ADBC already streams at full speed
# (benchmarks/read.py: 100-symbol and whole-table reads run at the same rows/s).
DEFAULT_CHUNK_SYMBOLS = 200
# Soft cap on rows per batch: after each batch the symbol count adapts to the rows per symbol seen,
# so minute bars (100k+ rows per symbol) still stream in batches of ~1M rows (~60-140 MB).
DEFAULT_CHUNK_ROWS = 1_000_000
# Arrow IPC record batches are written at most this long: featurestore.load decompresses one
# record batch at a time, so shorter batches keep a re-load's memory bounded. Same size as
# load.DEFAULT_CHUNK_ROWS (chosen in benchmarks/load.py).
IPC_BATCH_ROWS = 250_000

# Extension -> format. Compressed CSV (.csv.gz, .csv.bz2, .csv.zst) is what load reads back too.
EXPORT_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".feather": "feather",
    ".arrow": "feather",
    ".ipc": "feather",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".csv.bz2": "csv",
    ".csv.zst": "csv",
}
_FORMAT_NAMES = {"parquet": "parquet", "feather": "feather", "arrow": "feather", "ipc": "feather", "csv": "csv"}
_CSV_STREAM_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}

# Codecs when compression= is not given, chosen in benchmarks/serialization.py
# (benchmarks/results/serialization.md): Parquet zstd was the smallest file of every format at a
# write speed close to snappy's; Feather lz4 keeps the fastest read of any file format.
DEFAULT_COMPRESSION = {"parquet": "zstd", "feather": "lz4", "csv": None}

# progress= callback: called after each batch is read with (rows so far, symbols done, symbols total)
ExportProgress = Callable[[int, int, int], None]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote, and how long it took."""

    path: str
    format: str  # "parquet", "feather" or "csv"
    compression: str | None
    rows: int
    symbols: int  # symbols with at least one row in the file
    columns: tuple[str, ...]
    files: int
    bytes: int  # size of the file(s) on disk
    seconds: float  # wall time of the whole export
    read_seconds: float  # time spent in reads (writes overlap them)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["columns"] = list(self.columns)
        out["rows_per_s"] = self.rows_per_s
        return out


def export_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The export format of ``path``: ``format=`` if given, else from the extension.

    Raises ConfigError for an unknown format or extension.
    """
    if format is not None:
        fmt = _FORMAT_NAMES.get(str(format).lower())
        if fmt is None:
            raise ConfigError(f"unknown export format {format!r}; use one of {sorted(_FORMAT_NAMES)}")
        return fmt
    name = Path(path).name.lower()
    for ext in sorted(EXPORT_FORMATS, key=len, reverse=True):  # .csv.gz before .gz
        if name.endswith(ext):
            return EXPORT_FORMATS[ext]
    raise ConfigError(
        f"cannot tell the export format of {str(path)!r}; use one of the extensions "
        f"{', '.join(EXPORT_FORMATS)} or pass format= ({', '.join(sorted(set(_FORMAT_NAMES.values())))})"
    )


def export(
    store: FeatureStore,
    path: str | os.PathLike[str],
    *,
    symbols: str | Sequence[str] | None = None,
    start: Any = None,
    end: Any = None,
    view: str | None = None,
    version: int | None = None,
    columns: str | Sequence[str] | None = None,
    format: str | None = None,
    compression: str | None = None,
    chunk_symbols: int = DEFAULT_CHUNK_SYMBOLS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    overwrite: bool = False,
    progress: bool | ExportProgress | None = None,
    as_known_at: Any = None,
) -> ExportResult:
    """Write stored bars (and, with ``view``, its features) to one Parquet, Feather or CSV file.

    ``symbols=None`` exports every symbol; ``start``/``end`` bound ts (closed interval, tz-aware,
    as in reads). The format comes from the extension unless ``format=`` (``"parquet"``,
    ``"feather"``, ``"csv"``). ``compression`` overrides the format's codec (Parquet: ``"zstd"``
    default, ``"snappy"``, ``"gzip"``, ``"none"``...; Feather: ``"lz4"`` default, ``"zstd"``,
    ``"none"``; CSV: from the extension, ``.csv.gz`` etc.). ``columns`` picks feature columns of
    the view. Symbols are read ``chunk_symbols`` at a time (fewer when batches exceed about
    ``chunk_rows`` rows). An existing ``path`` is an error unless ``overwrite=True``.
    ``progress``: a bar on a terminal (``None``), always (``True``), never (``False``), or a
    callable ``progress(rows, symbols_done, symbols_total)`` called after each batch is read.

    The whole file is one snapshot of the store, taken when the export starts: loads that
    commit while it runs are not in it (see the module docstring). ``as_known_at`` exports the
    store as it stood at that moment instead (knowledge time).

    Export bars (no view) to move data to another store: it loads back identically. Export a
    view for other tools; see the module docstring for why that file does not load back.
    """
    started = time.perf_counter()
    fmt = export_format(path, format)
    codec = _codec(fmt, compression, path)
    if isinstance(chunk_symbols, bool) or not isinstance(chunk_symbols, int) or chunk_symbols < 1:
        raise ConfigError(f"chunk_symbols must be an int >= 1, got {chunk_symbols!r}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be an int >= 1, got {chunk_rows!r}")
    if view is None and (version is not None or columns is not None):
        raise ConfigError("version= and columns= select a view's features; pass view= too")
    target = Path(path)
    if target.exists() and not overwrite:
        raise ConfigError(f"{str(target)!r} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if not target.parent.is_dir():
        raise ConfigError(f"directory {str(target.parent)!r} does not exist")

    reader = store.reader

    def read(batch: list[str]) -> pa.Table:
        if view is None:
            return reader.get_bars(batch, start, end, as_arrow=True, as_known_at=as_known_at)
        return reader.get_features(
            batch, start, end, view=view, version=version, columns=columns, include_bars=True, as_arrow=True,
            as_known_at=as_known_at,
        )

    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    rows = n_symbols = 0
    read_s = 0.0
    callback = progress if callable(progress) else None
    bar = _progress(None if progress is None else progress is True, desc=f"export {target.name}")
    try:
        # Every read below (symbol list, view version, schema, batches) is in one snapshot.
        with reader.snapshot() as snap:
            # A read of no symbols checks start/end/view/columns and gives the schema before any work.
            schema = read([]).schema
            names = snap.run(_all_symbols) if symbols is None else _requested(symbols)
            meta = {"view": view, "version": version, "start": _text(start), "end": _text(end)}
            if as_known_at is not None:  # what the file is: the store as it stood then
                meta["as_known_at"] = _text(as_known_at)
            if view is not None:
                meta["version"] = snap.run(lambda conn: _view_version(conn, view, version))
            schema = schema.with_metadata({"featurestore": json.dumps(meta)})
            batches = _Batches(names, chunk_symbols, chunk_rows)
            # Batch i+1 is read (this thread, the snapshot's connection) while batch i is written
            # by one writer thread: pyarrow's writers and ADBC's fetch both release the GIL.
            with _writer(fmt, tmp, schema, codec) as write, ThreadPoolExecutor(1, "featurestore-export") as pool:
                pending: Future[None] | None = None
                while (batch := batches.next()) is not None:
                    t = time.perf_counter()
                    table = read(batch)
                    read_s += time.perf_counter() - t
                    batches.observe(len(batch), table.num_rows)
                    if pending is not None:
                        pending.result()  # re-raises a write error
                        pending = None
                    if table.num_rows:
                        pending = pool.submit(write, table.cast(schema))
                        rows += table.num_rows
                        n_symbols += len(table.column("symbol").unique())
                    bar.update(table.num_rows)
                    if callback is not None:
                        callback(rows, batches.pos, len(names))
                if pending is not None:
                    pending.result()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return ExportResult(
        path=str(target),
        format=fmt,
        compression=codec,
        rows=rows,
        symbols=n_symbols,
        columns=tuple(schema.names),
        files=1,
        bytes=target.stat().st_size,
        seconds=time.perf_counter() - started,
        read_seconds=read_s,
    )


# -- symbols and batches ---------------------------------------------------------------------


def _all_symbols(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT symbol FROM entities ORDER BY symbol").fetchall()
    # sorted in Python, as the reader sorts each batch: the file is sorted whatever the collation
    return sorted(r[0] for r in rows)


def _requested(symbols: str | Sequence[str]) -> list[str]:
    if isinstance(symbols, str):
        return [symbols]
    if isinstance(symbols, (bytes, dict)) or not isinstance(symbols, Iterable):
        raise ConfigError(f"symbols must be a str or a sequence of str, got {type(symbols).__name__}")
    bad = [s for s in symbols if not isinstance(s, str)]
    if bad:
        raise ConfigError(f"symbols must be strings; got {bad[0]!r} ({type(bad[0]).__name__})")
    return sorted(set(symbols))


class _Batches:
    """Symbol batches whose size adapts to the rows per symbol seen so far."""

    def __init__(self, names: list[str], chunk_symbols: int, chunk_rows: int) -> None:
        self.names, self.max_symbols, self.chunk_rows = names, chunk_symbols, chunk_rows
        self.pos = 0
        self.rows_seen = self.symbols_seen = 0

    def observe(self, n_symbols: int, n_rows: int) -> None:
        self.symbols_seen += n_symbols
        self.rows_seen += n_rows

    def next(self) -> list[str] | None:
        if self.pos >= len(self.names):
            return None
        size = self.max_symbols
        if self.rows_seen:
            per_symbol = self.rows_seen / max(self.symbols_seen, 1)
            size = max(1, min(size, int(self.chunk_rows / per_symbol)))
        batch = self.names[self.pos : self.pos + size]
        self.pos += len(batch)
        return batch


# -- writers ---------------------------------------------------------------------------------


def _codec(fmt: str, compression: str | None, path: str | os.PathLike[str]) -> str | None:
    if fmt == "csv":
        name = Path(path).name.lower()
        from_ext = next((c for ext, c in _CSV_STREAM_COMPRESSION.items() if name.endswith(ext)), None)
        if compression is None:
            return from_ext
        codec = str(compression).lower()
        if codec in ("none", "uncompressed"):
            return None
        if codec not in _CSV_STREAM_COMPRESSION.values():
            raise ConfigError(f"CSV compression must be one of gzip, bz2, zstd or none, got {compression!r}")
        return codec
    if compression is None:
        return DEFAULT_COMPRESSION[fmt]
    codec = str(compression).lower()
    if codec in ("none", "uncompressed"):
        return None
    allowed = ("zstd", "lz4") if fmt == "feather" else ("zstd", "snappy", "gzip", "brotli", "lz4")
    if codec not in allowed:
        raise ConfigError(f"{fmt} compression must be one of {', '.join(allowed)} or none, got {compression!r}")
    return codec


class _writer:
    """Context manager yielding ``write(table)`` that appends to one file of the format."""

    def __init__(self, fmt: str, tmp: Path, schema: pa.Schema, codec: str | None) -> None:
        self.fmt, self.tmp, self.schema, self.codec = fmt, tmp, schema, codec
        self._close: list[Any] = []

    def __enter__(self) -> Any:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            w = pq.ParquetWriter(str(self.tmp), self.schema, compression=self.codec or "none")
            self._close.append(w.close)
            return w.write_table
        if self.fmt == "feather":
            import pyarrow.ipc as ipc

            sink = pa.OSFile(str(self.tmp), "wb")
            self._close.append(sink.close)
            opts = ipc.IpcWriteOptions(compression=self.codec)
            w = ipc.new_file(sink, self.schema, options=opts)
            self._close.insert(0, w.close)
            return lambda table: w.write_table(table, max_chunksize=IPC_BATCH_ROWS)
        import pyarrow.csv as pa_csv

        raw = pa.OSFile(str(self.tmp), "wb")
        self._close.append(raw.close)
        sink = raw if self.codec is None else pa.CompressedOutputStream(raw, self.codec)
        if sink is not raw:
            self._close.insert(0, sink.close)
        w = pa_csv.CSVWriter(sink, self.schema)
        self._close.insert(0, w.close)
        return w.write_table

    def __exit__(self, *exc: object) -> None:
        for close in self._close:
            close()


# -- small helpers ---------------------------------------------------------------------------


def _view_version(conn: psycopg.Connection[Any], view: str, version: int | None) -> int:
    """The version the export reads: as every read, the newest ready one unless ``version``."""
    from featurestore.views import read_view

    return read_view(conn, view, version).version


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool | None, *, desc: str) -> Any:
    """A tqdm bar (rows) on a terminal or when asked for, else a silent stand-in."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(desc=desc, unit="rows", unit_scale=True, leave=False, file=sys.stderr)
