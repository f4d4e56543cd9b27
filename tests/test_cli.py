"""The CLI: a thin shell; every command has help with an example and is in the README."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT
from sqlalchemy.engine import URL

from featurestore.cli import cli


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        out.append((full, cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, full + " "))
    return out


COMMANDS = _commands(cli)


@pytest.mark.parametrize("name", [n for n, _ in COMMANDS])
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


@pytest.mark.parametrize("name", [n for n, c in COMMANDS if not isinstance(c, click.Group)])
def test_every_command_is_in_the_readme(name: str) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"featurestore {name}" in readme


def test_info_json_masks_password(store: Any, db_url: URL) -> None:
    url = db_url.set(password="hunter2").render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, ["--url", url, "info", "--json"])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    facts = json.loads(result.output)
    assert facts["schema_revision"] == facts["schema_head"]
    assert facts["server_version"].startswith("18")
    assert set(facts["rows"]) >= {"entities", "feature_views", "loads"}  # exact counts of the small tables
    assert facts["bars"]["estimate_source"] in ("exact", "statistics", "size") and facts["bars"]["rows_estimate"] >= 0


# Runs `featurestore info` (human and JSON), `featurestore migrate` on a store already at the head,
# and opens the store the way the embedded default does (auto_migrate=True), then lists what of
# the heavy dependencies got imported: none of it is needed for these paths.
_AT_HEAD_IMPORTS = """
import sys
from featurestore.cli import cli
from featurestore.client import FeatureStore
url = sys.argv[1]
for args in (["--url", url, "info"], ["--url", url, "info", "--json"], ["--url", url, "migrate"]):
    cli.main(args=args, prog_name="featurestore", standalone_mode=False)
with FeatureStore(url, auto_migrate=True) as fs:
    assert fs.info()["schema_revision"] == fs.schema_revision
heavy = {"alembic", "mako", "numba", "llvmlite", "numpy", "pandas", "pyarrow", "matplotlib", "tqdm", "joblib"}
loaded = [m for m in sys.modules if m.split(".")[0] in heavy or m.startswith("featurestore.indicators")]
print("loaded:", sorted(loaded))
"""


def test_info_at_head_imports_no_migration_or_compute_stack(store: Any, db_url: URL) -> None:
    url = db_url.render_as_string(hide_password=False)
    out = subprocess.run(
        [sys.executable, "-c", _AT_HEAD_IMPORTS, url], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert re.search(r"^schema revision: 0006$", out.stdout, re.MULTILINE), out.stdout
    assert "schema at revision 0006" in out.stdout
    assert out.stdout.splitlines()[-1] == "loaded: []", out.stdout.splitlines()[-1]


def test_library_errors_are_one_clean_line(make_database: Any) -> None:
    url = make_database("cli_empty").render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, ["--url", url, "info"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error:") and "featurestore migrate" in result.output
    assert "Traceback" not in result.output


def test_migrate_and_downgrade(make_database: Any) -> None:
    url = make_database("cli_mig").render_as_string(hide_password=False)
    runner = CliRunner()
    assert "revision 0006" in runner.invoke(cli, ["--url", url, "migrate"]).output
    assert "revision 0001" in runner.invoke(cli, ["--url", url, "migrate", "--downgrade", "0001", "--yes"]).output
    assert "revision 0006" in runner.invoke(cli, ["--url", url, "migrate", "head"]).output


def test_server_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(tmp_path / "h")
    status = runner.invoke(cli, ["--home", home, "server", "status", "--json"])
    assert status.exit_code == 3 and json.loads(status.output)["running"] is False
    assert "running:" in runner.invoke(cli, ["--home", home, "server", "start"]).output
    status = runner.invoke(cli, ["--home", home, "server", "status", "--json"])
    facts = json.loads(status.output)
    assert status.exit_code == 0 and facts["running"] is True and facts["pid"] > 0
    assert runner.invoke(cli, ["--home", home, "server", "stop"]).output.strip() == "stopped"


def test_load_and_views_commands(make_database: Any, tmp_path: Path) -> None:
    from helpers import make_bars

    url = make_database("cli_load").render_as_string(hide_password=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["--url", url, "migrate"]).exit_code == 0
    df = make_bars(["AAA"], 80).drop(columns=["symbol"]).rename(columns={"ts": "Date", "close": "Close"})
    df["Date"] = df["Date"].dt.tz_localize(None)
    df["Adj Close"] = df["Close"]
    path = tmp_path / "aaa.csv"
    df.to_csv(path, index=False)
    args = ["--url", url, "load", str(path), "--symbol", "AAA", "--map", "Date=ts", "--map", "Close=close", "--map", "Adj Close="]
    naive = runner.invoke(cli, args)
    assert naive.exit_code == 1 and "pass --assume-tz UTC" in naive.output and "assume_tz" not in naive.output
    ok = runner.invoke(cli, [*args, "--assume-tz", "UTC", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["inserted"] == 80
    created = runner.invoke(cli, ["--url", url, "views", "create", "tech", "sma_20", "rsi_14"])
    assert created.exit_code == 0 and re.search(r"^rows:\s+80$", created.output, re.MULTILINE), created.output
    listed = json.loads(runner.invoke(cli, ["--url", url, "views", "list", "--json"]).output)
    assert [(v["name"], v["version"]) for v in listed] == [("tech", 1)]
    desc = json.loads(runner.invoke(cli, ["--url", url, "views", "describe", "tech", "--json"]).output)
    assert desc["columns"] == ["sma_20", "rsi_14"]
    assert "dropped tech version(s) 1" in runner.invoke(cli, ["--url", url, "views", "drop", "tech", "--yes"]).output
    bad = runner.invoke(cli, ["--url", url, "views", "describe", "tech"])
    assert bad.exit_code == 1 and "no view 'tech'" in bad.output
