"""The ``featurestore`` command: a thin shell over the Python API.

Each command opens the store, makes one call, and prints the result. Library errors become one
clean line on stderr and exit status 1, in one place (:class:`_Group`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from featurestore.errors import FeatureStoreError

__all__ = ["main", "cli"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FeatureStoreError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


def _open(ctx: click.Context, **kwargs: Any) -> Any:
    from featurestore.client import FeatureStore

    obj = ctx.find_root().obj or {}
    return FeatureStore(obj.get("url"), home=obj.get("home"), **kwargs)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _print_info(info: dict[str, Any], indent: int = 0) -> None:
    pad = "  " * indent
    for key, value in info.items():
        if isinstance(value, dict):
            click.echo(f"{pad}{key}:")
            _print_info(value, indent + 1)
        else:
            click.echo(f"{pad}{key}: {value}")


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
    """
    ctx.obj = {"url": url, "home": home}


@cli.command()
@click.argument("revision", default="head")
@click.option("--downgrade", "down", metavar="REV", help="Downgrade to REV instead (e.g. base).")
@click.pass_context
def migrate(ctx: click.Context, revision: str, down: str | None) -> None:
    """Upgrade the schema to REVISION (default: head), or --downgrade to REV.

    \b
    Example:
      featurestore migrate
      featurestore migrate --downgrade 0001
    """
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
    _print_json(facts) if as_json else _print_info(facts)


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

    \b
    Example:
      featurestore server status
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
@click.option("--chunk-rows", type=int, help="Rows per streamed chunk.")
@click.option("--no-create-symbols", is_flag=True, help="Fail on symbols the store does not know.")
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
    chunk_rows: int | None,
    no_create_symbols: bool,
    as_json: bool,
) -> None:
    """Load CSV, Parquet or Feather files (or directories, globs) in one transaction.

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
    with _open(ctx) as store:
        result = store.load(
            list(paths),
            format=fmt,
            symbol=symbol,
            column_map=column_map or None,
            chunk_rows=chunk_rows,
            on_conflict=on_conflict,
            create_symbols=not no_create_symbols,
            assume_tz=assume_tz,
        )
    facts = result.as_dict()
    _print_json(facts) if as_json else _print_info(facts)


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
    for v in items:
        click.echo(f"{v['name']} v{v['version']}  {v['status']}  {v['table']}  {' '.join(v['indicators'] + v['user_columns'])}")


@views.command("create")
@click.argument("name")
@click.argument("indicators", nargs=-1)
@click.option("--column", "columns", multiple=True, help="A user-supplied float column; repeatable.")
@click.option("--jobs", "n_jobs", type=int, default=1, show_default=True, help="Parallel backfill workers (joblib).")
@click.pass_context
def views_create(ctx: click.Context, name: str, indicators: tuple[str, ...], columns: tuple[str, ...], n_jobs: int) -> None:
    """Register view NAME with INDICATORS and backfill it from the stored bars.

    \b
    Example:
      featurestore views create tech sma_20 ema_50 rsi_14 macd_12_26_9 bbands_20_2 atr_14 adx_14
    """
    with _open(ctx) as store:
        view = store.create_view(name, list(indicators), columns=list(columns) or None, n_jobs=n_jobs)
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
@click.pass_context
def views_drop(ctx: click.Context, name: str, version: int | None) -> None:
    """Drop view NAME (or one version of it) with its table.

    \b
    Example:
      featurestore views drop tech --version 1
    """
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
    as_json: bool,
) -> None:
    """Export bars (and optionally a view's features) to PATH: Parquet, Feather or CSV.

    \b
    Example:
      featurestore export bars.parquet
      featurestore export tech.feather --view tech --start 2024-01-01T00:00Z
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
        )
    facts = result.as_dict()
    _print_json(facts) if as_json else _print_info(facts)


@cli.command()
@click.option("--full", is_flag=True, help="Full sizes (slow); default: quick mode.")
@click.option("--only", multiple=True, help="Run only this benchmark (repeatable): indicators, load, read, cache, serialization, pool.")
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
@click.option("--home", "demo_home", type=click.Path(file_okay=False, path_type=Path), help="Demo data directory (default: beside the default home, never your real store).")
@click.option("--symbols", type=int, default=500, show_default=True, help="Symbols to generate.")
@click.option("--days", type=int, default=1260, show_default=True, help="Daily bars per symbol (1260 = 5 years).")
@click.option("--from", "source", type=click.Path(exists=True, path_type=Path), help="Load these files instead of generating bars.")
@click.option("--clean", is_flag=True, help="Stop the demo server and delete its data, then exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def demo(
    ctx: click.Context,
    demo_home: Path | None,
    symbols: int,
    days: int,
    source: Path | None,
    clean: bool,
    as_json: bool,
) -> None:
    """Run the main job end to end on the embedded server and print a report.

    Generates 5 years of daily bars for 500 symbols (or loads --from PATH), creates a view with
    the seven seed indicators, ingests, appends a day, corrects a bar, reads a range, the latest
    rows and a point-in-time training frame (twice: the second time from the cache). Safe to run
    twice.

    \b
    Example:
      featurestore demo
      featurestore demo --symbols 50 --days 500
      featurestore demo --clean
    """
    from featurestore import demo as _demo

    if clean:
        removed = _demo.clean(demo_home)
        click.echo("removed the demo data" if removed else "no demo data to remove")
        return
    url = (ctx.find_root().obj or {}).get("url")
    report = _demo.run_demo(home=demo_home, url=url, symbols=symbols, days=days, source=source)
    if as_json:
        _print_json(report.as_dict())
    else:
        click.echo(report.render())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="featurestore")


if __name__ == "__main__":  # pragma: no cover
    main()
