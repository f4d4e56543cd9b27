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
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Run the main job end to end on the embedded server and print a report.

    \b
    Example:
      featurestore demo
    """
    with _open(ctx) as store:
        _print_info(store.info())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="featurestore")


if __name__ == "__main__":  # pragma: no cover
    main()
