"""The ``featurestore`` command: a thin shell over the Python API.

Each command opens the store, makes one call, and prints the result. Library errors become one
clean line on stderr and exit status 1, Ctrl-C one line and exit status 130, in one place
(:class:`_Group`).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click

from featurestore.errors import FeatureStoreError

__all__ = ["cli", "main"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # Ctrl-C: one line (a load says what it left), status 130
            from featurestore.errors import LoadInterrupted

            click.echo(str(exc) if isinstance(exc, LoadInterrupted) else "interrupted", err=True)
            sys.exit(130)
        except FeatureStoreError as exc:
            from featurestore.load import LoadInputError

            # a load error's fix is shown as this CLI's options (--map SRC=DST), not as Python
            text = exc.render_cli() if isinstance(exc, LoadInputError) else str(exc)
            click.echo(f"error: {text}", err=True)
            sys.exit(1)


def _open(ctx: click.Context, **kwargs: Any) -> Any:
    from featurestore.client import FeatureStore

    obj = ctx.find_root().obj or {}
    return FeatureStore(obj.get("url"), home=obj.get("home"), **kwargs)


def _confirm(yes: bool, action: str) -> None:
    """Destructive commands run with --yes, or after a yes at a terminal prompt; else exit 2."""
    if yes:
        return
    if sys.stdin.isatty() and sys.stdout.isatty():
        click.confirm(f"{action}. Continue?", abort=True, err=True)
        return
    raise click.UsageError(f"refusing to {action[0].lower()}{action[1:]} without --yes (no terminal to ask on)")


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# -- human-readable output ------------------------------------------------------------------------

_PLAIN_INTS = {"pid", "load_id", "generation", "version", "postgres_version", "port", "size", "max_overflow"}


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    """0.5434 -> '543 ms'; 12.34 -> '12.3 s'."""
    if s < 1:
        return f"{s * 1000:,.0f} ms" if s >= 0.001 else f"{s * 1e6:,.0f} µs"
    return f"{s:,.2f} s" if s < 10 else f"{s:,.1f} s"


def human_value(key: str, value: Any) -> str:
    """One value in the unit its key names (bytes, seconds, rates, ratios), with thousands separators."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if key.endswith("_bytes") or key == "bytes":
            return human_bytes(value)
        if key.endswith("_per_s"):
            unit = key[: -len("_per_s")] or "items"
            return f"{value:,.0f} {unit}/s"
        if key.endswith("_s") or key == "seconds":
            return human_seconds(value)
        if key.endswith("ratio"):
            return f"{value * 100:.1f} %"
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value) if key in _PLAIN_INTS else f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "none"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def _label(key: str) -> str:
    for suffix in ("_bytes", "_s"):
        if key.endswith(suffix) and not key.endswith("_per_s"):
            key = key[: -len(suffix)]
    return key.replace("_", " ")


def _lines(info: dict[str, Any], indent: int = 0) -> list[str]:
    pad = "  " * indent
    shown = {k: v for k, v in info.items() if v is not None}
    width = max((len(_label(k)) for k in shown), default=0)
    out: list[str] = []
    for key, value in shown.items():
        if isinstance(value, dict):
            out.append(f"{pad}{_label(key)}:")
            out.extend(_lines(value, indent + 1) if value else [f"{pad}  (none)"])
        else:
            out.append(f"{pad}{_label(key) + ':':<{width + 1}} {human_value(key, value)}")
    return out


def _print_info(info: dict[str, Any]) -> None:
    """Aligned ``key: value`` lines in human units; None values are left out."""
    click.echo("\n".join(_lines(info)))


def _load_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """A load result for people: no generation on a no-op load, phases in seconds."""
    out = dict(facts)
    if not (out.get("inserted") or out.get("updated")):
        out.pop("generation", None)  # nothing changed: the store's generation did not move
    if out.get("phases"):
        out["phases"] = {f"{k}_s": v for k, v in out["phases"].items()}
    return out


def _info_facts(facts: dict[str, Any], last_load: dict[str, Any] | None) -> dict[str, Any]:
    """``info`` for people: per table its rows (``~N rows (estimate)`` where the table is too large
    to count in a moment), and the last load from the ``loads`` table when this process made none."""
    out = {k: v for k, v in facts.items() if k not in ("rows", "bars", "server", "last_load")}
    server = facts.get("server") or {}
    tables: dict[str, str] = {}
    for name, t in (server.get("tables") or {}).items():
        n = t["rows_estimate"]
        unit = "segments" if name == "bars_segments" or (name.startswith("fv_") and name.endswith("_s")) else "rows"
        count = f"{n:,} {unit}" if t.get("estimate_source") == "exact" else f"~{n:,} {unit} (estimate)"
        tables[name] = f"{count}, {human_bytes(t['table_bytes'])} + {human_bytes(t['index_bytes'])} indexes"
    bars = facts.get("bars") or {}
    if bars.get("in_segments"):
        out["bars in history segments"] = f"{bars['in_segments']:,}"
    out["server"] = {"database_bytes": server.get("database_bytes"), "tables": tables}
    out["last_load"] = facts.get("last_load") or last_load or "none recorded"
    return out


def _last_load_row(store: Any) -> dict[str, Any] | None:
    """The newest row of the ``loads`` table (every process's loads, not only this one's)."""
    with store.db.connection() as conn:
        row = conn.execute(
            "SELECT load_id, source, committed_at, rows_in, rows_inserted, rows_updated, rows_unchanged, "
            "symbols, features_written FROM loads ORDER BY load_id DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return None
    keys = ("load_id", "source", "committed_at", "rows_in", "inserted", "updated", "unchanged", "symbols", "features_written")
    return dict(zip(keys, row, strict=True))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="FEATURESTORE_URL", help="PostgreSQL URL (default: the embedded server).")
@click.option(
    "--home",
    envvar="FEATURESTORE_HOME",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory of the embedded server.",
)
@click.version_option(package_name="featurestore")
@click.pass_context
def cli(ctx: click.Context, url: str | None, home: Path | None) -> None:
    """featurestore: a PostgreSQL-backed feature store for market data.

    \b
    Example:
      featurestore demo
      featurestore --url postgresql://fs:fs@localhost:5432/fs migrate

    \b
    Exit status:
      0  success
      1  the command failed (the message on stderr says why)
      2  usage error, or a destructive command refused without --yes
      3  `server status`: the embedded server is not running
      130  interrupted (Ctrl-C); an interrupted load wrote nothing
    """
    ctx.obj = {"url": url, "home": home}


@cli.command()
@click.argument("revision", default="head")
@click.option("--downgrade", "down", metavar="REV", help="Downgrade to REV instead (e.g. base); drops data, needs --yes.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before a downgrade (required off a terminal).")
@click.pass_context
def migrate(ctx: click.Context, revision: str, down: str | None, yes: bool) -> None:
    """Upgrade the schema to REVISION (default: head), or --downgrade to REV.

    A downgrade drops tables and their data (``base`` drops everything): it asks for
    confirmation on a terminal, and elsewhere runs only with --yes (else exit status 2).

    \b
    Example:
      featurestore migrate
      featurestore migrate --downgrade 0001 --yes
    """
    if down:
        _confirm(yes, f"Downgrade the schema to {down}: this drops tables and the data in them")
    with _open(ctx, auto_migrate=False, check_schema=False) as store:
        now = store.downgrade(down) if down else store.migrate(revision)
    click.echo(f"schema at revision {now}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def info(ctx: click.Context, as_json: bool) -> None:
    """Print facts about the store: URL (password masked), server, schema, rows, pool.

    \b
    Example:
      featurestore info --json
    """
    with _open(ctx) as store:
        facts = store.info()
        last = None if as_json or facts.get("last_load") else _last_load_row(store)
    _print_json(facts) if as_json else _print_info(_info_facts(facts, last))


@cli.group()
def server() -> None:
    """Start, stop or inspect the embedded PostgreSQL server.

    \b
    Example:
      featurestore server start && featurestore server status
    """


def _embedded(ctx: click.Context) -> Any:
    from featurestore.config import default_home
    from featurestore.embedded import EmbeddedServer

    home = (ctx.find_root().obj or {}).get("home") or default_home()
    return EmbeddedServer(Path(home), cleanup="keep")


@server.command("start")
@click.pass_context
def server_start(ctx: click.Context) -> None:
    """Start the embedded server and leave it running.

    \b
    Example:
      featurestore server start
    """
    srv = _embedded(ctx)
    url = srv.start()
    click.echo(f"running: {url.render_as_string(hide_password=True)}")


@server.command("stop")
@click.pass_context
def server_stop(ctx: click.Context) -> None:
    """Stop the embedded server.

    \b
    Example:
      featurestore server stop
    """
    srv = _embedded(ctx)
    click.echo("stopped" if srv.stop() else "not running")


@server.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def server_status(ctx: click.Context, as_json: bool) -> None:
    """Print whether the embedded server runs, its pid, data dir and URL.

    Exit status 0 when the server runs, 3 when it is stopped (for scripts), 1 on an error.

    \b
    Example:
      featurestore server status || featurestore server start
    """
    st = _embedded(ctx).status()
    facts = {
        "data_dir": str(st.data_dir),
        "initialized": st.initialized,
        "running": st.running,
        "pid": st.pid,
        "postgres_version": st.postgres_version,
        "url": st.url(),
    }
    _print_json(facts) if as_json else _print_info(facts)
    if not st.running:
        sys.exit(3)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--symbol", help="Symbol of one-symbol files (they then have no symbol column).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "feather"]), help="Override the format from the extension.")
@click.option("--on-conflict", type=click.Choice(["update", "ignore", "error"]), default="update", show_default=True)
@click.option("--map", "mapping", multiple=True, metavar="SRC=DST", help="Rename a source column (DST empty drops it); repeatable.")
@click.option("--assume-tz", metavar="TZ", help="Treat naive timestamps as this zone (e.g. UTC); default: reject them.")
@click.option("--delimiter", default=",", show_default=True, help="CSV field delimiter.")
@click.option("--encoding", default="utf8", show_default=True, help="CSV text encoding (e.g. latin-1).")
@click.option("--chunk-rows", type=int, help="Rows per streamed chunk.")
@click.option("--no-create-symbols", is_flag=True, help="Fail on symbols the store does not know.")
@click.option(
    "--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
    help="Where the features are computed: here, or split by symbol over a Ray cluster (RAY_ADDRESS, or `ray start`'s).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the load result as JSON.")
@click.pass_context
def load(
    ctx: click.Context,
    paths: tuple[Path, ...],
    symbol: str | None,
    fmt: str | None,
    on_conflict: str,
    mapping: tuple[str, ...],
    assume_tz: str | None,
    delimiter: str,
    encoding: str,
    chunk_rows: int | None,
    no_create_symbols: bool,
    backend: str,
    as_json: bool,
) -> None:
    """Load CSV, Parquet or Feather files (or directories, globs) in one transaction.

    Errors name the file, the data row (counted from 1, header excluded) and the column.

    \b
    Example:
      featurestore load data/*.parquet
      featurestore load GOOG.csv --symbol GOOG --assume-tz UTC --map Date=ts --map "Adj Close="
    """
    column_map: dict[str, str | None] = {}
    for item in mapping:
        src, sep, dst = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: use SRC=DST", param_hint="--map")
        column_map[src] = dst or None
    from featurestore.errors import LoadInterrupted

    with _open(ctx) as store:
        try:
            result = store.load(
                list(paths),
                format=fmt,
                symbol=symbol,
                column_map=column_map or None,
                chunk_rows=chunk_rows,
                on_conflict=on_conflict,
                create_symbols=not no_create_symbols,
                assume_tz=assume_tz,
                delimiter=delimiter,
                encoding=encoding,
                backend=backend,
            )
        except LoadInterrupted:
            raise
        except KeyboardInterrupt as exc:  # before the load's transaction began (reading file metadata)
            raise LoadInterrupted("load interrupted: nothing was written", committed=False) from exc
    facts = result.as_dict()
    _print_json(facts) if as_json else _print_info(_load_facts(facts))


@cli.group()
def views() -> None:
    """List, create, describe or drop feature views.

    \b
    Example:
      featurestore views create tech sma_20 rsi_14 macd_12_26_9
    """


@views.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def views_list(ctx: click.Context, as_json: bool) -> None:
    """List every registered view version.

    \b
    Example:
      featurestore views list
    """
    with _open(ctx) as store:
        items = store.list_views()
    if as_json:
        _print_json(items)
        return
    if not items:
        click.echo("no views yet (create one: featurestore views create NAME INDICATOR ...)")
        return
    rows = [(f"{v['name']} v{v['version']}", _view_status(v), str(v["table"]), " ".join(v["indicators"] + v["user_columns"])) for v in items]
    widths = [max(len(r[i]) for r in [("VIEW", "STATUS", "TABLE", "COLUMNS"), *rows]) for i in range(3)]
    for r in [("VIEW", "STATUS", "TABLE", "COLUMNS"), *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])


def _view_status(v: dict[str, object]) -> str:
    """``ready``, or an incomplete version's progress (``backfilling 2/6``), which reads skip by name."""
    if v.get("ready", v.get("status") == "ready"):
        return str(v["status"])
    done, total = v.get("entities_backfilled"), v.get("entities_total")
    return f"{v['status']} {done}/{total}" if done is not None and total is not None else str(v["status"])


@views.command("create")
@click.argument("name")
@click.argument("indicators", nargs=-1)
@click.option("--column", "columns", multiple=True, help="A user-supplied float column; repeatable.")
@click.option("--jobs", "n_jobs", type=int, default=1, show_default=True,
              help="Parallel backfill workers (joblib); with --backend ray, the most batches running at once.")
@click.option(
    "--dtype", default="float64", show_default=True,
    help="Feature column type: float64 (float8) or float32 (real: half the value bytes, ~7 significant digits).",
)
@click.option(
    "--backend", type=click.Choice(["joblib", "ray"]), default="joblib", show_default=True,
    help="Where backfill batches run: here / joblib workers, or tasks on a Ray cluster (RAY_ADDRESS, or `ray start`'s).",
)
@click.pass_context
def views_create(
    ctx: click.Context, name: str, indicators: tuple[str, ...], columns: tuple[str, ...], n_jobs: int, dtype: str,
    backend: str,
) -> None:
    """Register view NAME with INDICATORS and backfill it from the stored bars.

    \b
    Example:
      featurestore views create tech sma_20 ema_50 rsi_14 macd_12_26_9 bbands_20_2 atr_14 adx_14
      featurestore views create tech32 sma_20 rsi_14 --dtype float32
      RAY_ADDRESS=head:6379 featurestore views create tech sma_20 rsi_14 --backend ray
    """
    with _open(ctx) as store:
        view = store.create_view(
            name, list(indicators), columns=list(columns) or None, n_jobs=n_jobs, dtype=dtype, backend=backend
        )
        _print_info(store.describe_view(view.name, view.version))


@views.command("describe")
@click.argument("name")
@click.option("--version", type=int, help="A version (default: the newest).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def views_describe(ctx: click.Context, name: str, version: int | None, as_json: bool) -> None:
    """Describe view NAME: version, table, status, columns, rows.

    \b
    Example:
      featurestore views describe tech
    """
    with _open(ctx) as store:
        facts = store.describe_view(name, version)
    _print_json(facts) if as_json else _print_info(facts)


@views.command("drop")
@click.argument("name")
@click.option("--version", type=int, help="Drop only this version (default: every version).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask (required off a terminal).")
@click.pass_context
def views_drop(ctx: click.Context, name: str, version: int | None, yes: bool) -> None:
    """Drop view NAME (or one version of it) with its table.

    Asks for confirmation on a terminal; elsewhere runs only with --yes (else exit status 2).

    \b
    Example:
      featurestore views drop tech --version 1 --yes
    """
    what = f"version {version} of view {name}" if version is not None else f"every version of view {name}"
    _confirm(yes, f"Drop {what} with its feature table")
    with _open(ctx) as store:
        dropped = store.drop_view(name, version)
    click.echo(f"dropped {name} version(s) {', '.join(map(str, dropped))}")


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--symbol", "symbols", multiple=True, help="A symbol to export (repeatable; default: all).")
@click.option("--start", help="First ts (inclusive), with a zone, e.g. 2024-01-01T00:00Z.")
@click.option("--end", help="Last ts (inclusive), with a zone.")
@click.option("--view", help="Add this view's feature columns (such a file is for other tools, not for `load`).")
@click.option("--version", type=int, help="View version (default: newest).")
@click.option("--column", "columns", multiple=True, help="A feature column of the view (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "feather", "csv"]), help="Default: from the extension.")
@click.option("--compression", help="parquet: zstd|snappy|gzip|none; feather: lz4|zstd|none.")
@click.option("--chunk-symbols", type=int, default=200, show_default=True, help="Symbols per streamed batch.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@click.option("--as-known-at", help="Export the store as it stood at this moment (knowledge time), with a zone.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def export(
    ctx: click.Context,
    path: Path,
    symbols: tuple[str, ...],
    start: str | None,
    end: str | None,
    view: str | None,
    version: int | None,
    columns: tuple[str, ...],
    fmt: str | None,
    compression: str | None,
    chunk_symbols: int,
    overwrite: bool,
    as_known_at: str | None,
    as_json: bool,
) -> None:
    """Export bars (and optionally a view's features) to PATH: Parquet, Feather or CSV.

    \b
    Example:
      featurestore export bars.parquet
      featurestore export tech.feather --view tech --start 2024-01-01T00:00Z
      featurestore export asof.parquet --as-known-at 2024-06-30T22:00Z
    """
    with _open(ctx) as store:
        result = store.export(
            path,
            symbols=list(symbols) or None,
            start=start,
            end=end,
            view=view,
            version=version,
            columns=list(columns) or None,
            format=fmt,
            compression=compression,
            chunk_symbols=chunk_symbols,
            overwrite=overwrite,
            as_known_at=as_known_at,
        )
    facts = result.as_dict()
    _print_json(facts) if as_json else _print_info(facts)


@cli.command()
@click.argument("symbol")
@click.argument("ts")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@click.pass_context
def history(ctx: click.Context, symbol: str, ts: str, as_json: bool) -> None:
    """Every stored version of SYMBOL's bar at TS (with a zone) and of its feature rows.

    \b
    Example:
      featurestore history AAPL 2024-03-01T00:00Z
    """
    with _open(ctx) as store:
        h = store.history(symbol, ts)
    tables = {"bars": h.bars, **h.features}
    if as_json:
        _print_json({
            "symbol": h.symbol, "ts": h.ts.isoformat(), "history_since": h.history_since.isoformat(),
            **{name: json.loads(df.to_json(orient="records", date_format="iso")) for name, df in tables.items()},
        })
        return
    click.echo(f"{h.symbol} at {h.ts.isoformat()} (history kept since {h.history_since.isoformat()})")
    for name, df in tables.items():
        click.echo(f"\n{name}: {len(df)} version(s)")
        if len(df):
            shown = df.assign(
                known_from=df["known_from"].dt.strftime("%Y-%m-%d %H:%M:%S.%f%z"),
                known_until=df["known_until"].dt.strftime("%Y-%m-%d %H:%M:%S.%f%z").fillna("current"),
            ).drop(columns=["superseded_by"])
            click.echo(shown.to_string(index=False))


@cli.command()
@click.option("--older-than", "older_than", help="Compress rows older than now minus this (e.g. 90D, 2h).")
@click.option("--before", help="Compress rows before this time (ISO 8601 with a zone).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def compress(ctx: click.Context, older_than: str | None, before: str | None, as_json: bool) -> None:
    """Move old bars and feature rows into compressed history segments.

    Reads return the same results; whole-history reads get faster and the rows take less room
    (run VACUUM, or let autovacuum, to reuse the space they leave).

    \b
    Examples:
      featurestore compress --older-than 90D
      featurestore compress --before 2024-01-01T00:00Z
    """
    if (older_than is None) == (before is None):
        raise click.UsageError("give exactly one of --older-than or --before")
    with _open(ctx) as store:
        result = store.compress_history(before=before, older_than=older_than)
    if as_json:
        _print_json(result.as_dict())
        return
    feats = sum(result.feature_rows.values())
    click.echo(
        f"compressed history before {result.before.isoformat()}: {result.bar_rows:,} bars and "
        f"{feats:,} feature rows moved into segments in {human_seconds(result.elapsed_s)}; "
        f"{result.segment_rows:,} bars are held in {result.segments:,} segments"
    )


@cli.command()
@click.option("--shard-count", type=int, help="Shards per distributed table (default: the cluster's citus.shard_count).")
@click.option("--json", "as_json", is_flag=True, help="Print the placement as JSON.")
@click.pass_context
def distribute(ctx: click.Context, shard_count: int | None, as_json: bool) -> None:
    """Distribute the store on a Citus coordinator (FEATURESTORE_URL / --url names it).

    Bars, history and every view's tables are distributed by symbol and colocated; entities,
    views, loads and the store state become reference tables. Safe to run again.

    \b
    Example:
      featurestore --url postgresql://postgres@coordinator:5432/market distribute --shard-count 32
    """
    with _open(ctx) as store:
        placed = store.distribute(shard_count)
    if as_json:
        _print_json(placed)
        return
    kinds = placed["tables"].values()
    click.echo(
        f"distributed on Citus {placed['citus']}: {placed['workers']} worker(s), {placed['shard_count']} shards per table; "
        f"{sum(k == 'distributed' for k in kinds)} distributed and {sum(k == 'reference' for k in kinds)} reference tables"
    )


@cli.command()
@click.option("--full", is_flag=True, help="Full sizes (slow); default: quick mode.")
@click.option("--only", multiple=True, help="Run only this benchmark (repeatable): indicators, load, read, cache, serialization, pool (the default set), or any other script in benchmarks/ (demo, concurrency, soak).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("benchmark-report.md"), show_default=True)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (they need matplotlib: pip install featurestore[plots]).")
@click.option("--timeout", type=float, help="Seconds allowed per benchmark script.")
def bench(full: bool, only: tuple[str, ...], output: Path, no_plots: bool, timeout: float | None) -> None:
    """Run the benchmarks in benchmarks/ and write one Markdown report with plots.

    Runs from a source checkout (the scripts are not in the wheel).

    \b
    Example:
      featurestore bench --only indicators --only pool
      featurestore bench --full -o report.md
    """
    from featurestore.bench import run_benchmarks

    report = run_benchmarks(
        quick=not full,
        output=output,
        only=list(only) or None,
        plots=not no_plots,
        timeout=timeout,
        log=lambda m: click.echo(m, err=True),
    )
    click.echo(f"report written to {report}")


@cli.command()
@click.option("--url", "demo_url", help="Run in this database (only then is a database used; FEATURESTORE_URL is ignored).")
@click.option("--home", "demo_home", type=click.Path(file_okay=False, path_type=Path), help="Embedded home for the demo (default: FEATURESTORE_HOME if set, else a featurestore-demo directory).")
@click.option("--symbols", type=int, default=500, show_default=True, help="Symbols to generate.")
@click.option("--days", type=int, default=1260, show_default=True, help="Daily bars per symbol (1260 = 5 years).")
@click.option("--from", "source", type=click.Path(exists=True, path_type=Path), help="Load these files instead of generating bars.")
@click.option("--clean", is_flag=True, help="Stop the demo server and delete its home, then exit (needs --yes off a terminal).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --clean deletes the demo home.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def demo(
    ctx: click.Context,
    demo_url: str | None,
    demo_home: Path | None,
    symbols: int,
    days: int,
    source: Path | None,
    clean: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Run the main job end to end and print a report.

    Generates 5 years of daily bars for 500 symbols (or loads --from PATH), creates a view with
    the seven seed indicators, ingests, appends a day, corrects a bar, reads a range, the latest
    rows and a point-in-time training frame (twice: the second time from the cache). Safe to run
    twice: a second run changes nothing and reports 0 inserted, 0 updated.

    Where the data goes: a database only if you name it with --url (FEATURESTORE_URL is never
    used: it may be your real store). Otherwise the embedded server under --home, else under
    FEATURESTORE_HOME if set, else under a featurestore-demo directory beside the default home.
    The first line printed says which.

    \b
    Example:
      featurestore demo
      featurestore demo --symbols 50 --days 500
      featurestore demo --clean --yes
    """
    from featurestore import demo as _demo

    root = ctx.find_root()
    obj = root.obj or {}
    # the root --url/--home count only when typed on this command line, not from the environment
    if demo_url is None and root.get_parameter_source("url") == click.core.ParameterSource.COMMANDLINE:
        demo_url = obj.get("url")
    if demo_home is None and root.get_parameter_source("home") == click.core.ParameterSource.COMMANDLINE:
        demo_home = obj.get("home")
    if clean:
        if demo_url is not None:
            raise click.UsageError("--clean deletes an embedded demo home; it does not touch a --url database")
        path = demo_home if demo_home is not None else _demo.demo_home()
        if not path.exists():
            click.echo(f"no demo data to remove ({path})")
            return
        _confirm(yes, f"Stop the demo server and delete {path}")
        _demo.clean(path)
        click.echo(f"removed the demo data in {path}")
        return
    report = _demo.run_demo(
        home=demo_home, url=demo_url, symbols=symbols, days=days, source=source,
        log=lambda m: click.echo(m, err=True),
    )
    if as_json:
        _print_json(report.as_dict())
    else:
        click.echo(report.render())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="featurestore")


if __name__ == "__main__":  # pragma: no cover
    main()
