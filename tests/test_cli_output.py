"""What a new user meets on the command line: confirmations, CLI-syntax hints, readable output.

Each test runs the real CLI (click's runner) against a real database. Off a terminal (the runner's
stdin is not a tty) a destructive command without --yes must refuse and change nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner
from helpers import fingerprint, make_bars

from featurestore.cli import cli
from featurestore.config import libpq_url

RAW_FLOAT = re.compile(r"\d\.\d{5,}")  # e.g. 0.5434268919999568


def _migrated(make_database: Any, prefix: str) -> tuple[str, Any]:
    url = make_database(prefix)
    text = url.render_as_string(hide_password=False)
    assert CliRunner().invoke(cli, ["--url", text, "migrate"]).exit_code == 0
    return text, url


def _fp(url: Any) -> Any:
    with psycopg.connect(libpq_url(url)) as conn:
        return fingerprint(conn)


def test_downgrade_and_views_drop_need_yes_off_a_terminal(make_database: Any, tmp_path: Path) -> None:
    text, url = _migrated(make_database, "cli_yes")
    runner = CliRunner()
    path = tmp_path / "b.csv"
    make_bars(["AAA"], 40).to_csv(path, index=False)
    assert runner.invoke(cli, ["--url", text, "load", str(path)]).exit_code == 0
    assert runner.invoke(cli, ["--url", text, "views", "create", "tech", "sma_20"]).exit_code == 0
    before = _fp(url)
    refused = runner.invoke(cli, ["--url", text, "migrate", "--downgrade", "base"])
    assert refused.exit_code == 2 and "--yes" in refused.output and "drops tables" in refused.output
    refused = runner.invoke(cli, ["--url", text, "views", "drop", "tech"])
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert _fp(url) == before  # nothing was dropped
    dropped = runner.invoke(cli, ["--url", text, "views", "drop", "tech", "--yes"])
    assert dropped.exit_code == 0 and "dropped tech" in dropped.output
    down = runner.invoke(cli, ["--url", text, "migrate", "--downgrade", "base", "--yes"])
    assert down.exit_code == 0 and "schema at revision base" in down.output


def test_missing_column_hint_uses_cli_syntax(make_database: Any, tmp_path: Path) -> None:
    text, _ = _migrated(make_database, "cli_hint")
    df = make_bars(["AAA"], 5).rename(columns={"ts": "Date", "close": "Close"})
    df["Adj Close"] = df["Close"]
    path = tmp_path / "x.csv"
    df.to_csv(path, index=False)
    out = CliRunner().invoke(cli, ["--url", text, "load", str(path)])
    assert out.exit_code == 1
    assert "column_map" not in out.output and "symbol=" not in out.output
    assert "rename with --map Date=ts --map Close=close" in out.output, out.output
    fixed = CliRunner().invoke(cli, ["--url", text, "load", str(path), "--map", "Date=ts", "--map", "Close=close"])
    assert fixed.exit_code == 1 and "drop it with --map 'Adj Close='" in fixed.output, fixed.output
    done = CliRunner().invoke(
        cli, ["--url", text, "load", str(path), "--map", "Date=ts", "--map", "Close=close", "--map", "Adj Close="]
    )
    assert done.exit_code == 0, done.output
    semi = tmp_path / "semi.csv"
    make_bars(["AAA"], 3).to_csv(semi, index=False, sep=";")
    out = CliRunner().invoke(cli, ["--url", text, "load", str(semi)])
    assert out.exit_code == 1 and "--delimiter ';'" in out.output and "delimiter=" not in out.output
    assert CliRunner().invoke(cli, ["--url", text, "load", str(semi), "--delimiter", ";"]).exit_code == 0


def test_load_info_and_views_output_is_for_people(make_database: Any, tmp_path: Path) -> None:
    text, _ = _migrated(make_database, "cli_out")
    runner = CliRunner()
    empty = runner.invoke(cli, ["--url", text, "views", "list"])
    assert empty.exit_code == 0 and "no views yet" in empty.output
    path = tmp_path / "b.parquet"
    make_bars(["AAA", "BBB"], 60).to_parquet(path)
    first = runner.invoke(cli, ["--url", text, "load", str(path)])
    assert first.exit_code == 0, first.output
    assert re.search(r"^inserted:\s+120$", first.output, re.MULTILINE), first.output
    assert re.search(r"^generation:\s+\d+$", first.output, re.MULTILINE)
    again = runner.invoke(cli, ["--url", text, "load", str(path)])  # a no-op load
    out = again.output
    assert again.exit_code == 0 and "None" not in out and "generation" not in out, out
    assert not RAW_FLOAT.search(out), out
    assert re.search(r"^elapsed:\s+[\d,.]+ (ms|s)$", out, re.MULTILINE), out
    assert re.search(r"^rows per s:\s+[\d,]+ rows/s$", out, re.MULTILINE), out
    assert re.search(r"^unchanged:\s+120$", out, re.MULTILINE)
    # info in a new process: the last load comes from the loads table, counts are exact
    info = runner.invoke(cli, ["--url", text, "info"])
    out = info.output
    assert info.exit_code == 0 and "None" not in out and not RAW_FLOAT.search(out), out
    assert "rows_estimate" not in out and "rows estimate" not in out
    assert re.search(r"^\s+bars:\s+120 rows, [\d.,]+ (B|KiB|MiB)", out, re.MULTILINE), out
    assert re.search(r"^last load:$", out, re.MULTILINE) and str(path) in out
    assert re.search(r"^\s+rss:\s+[\d.,]+ (MiB|GiB)$", out, re.MULTILINE), out
    facts = json.loads(runner.invoke(cli, ["--url", text, "load", str(path), "--json"]).output)
    assert isinstance(facts["elapsed_s"], float)  # --json keeps machine values
    listed = runner.invoke(cli, ["--url", text, "views", "create", "tech", "sma_20"])
    assert listed.exit_code == 0 and re.search(r"^rows:\s+120$", listed.output, re.MULTILINE), listed.output
    table = runner.invoke(cli, ["--url", text, "views", "list"]).output
    assert table.splitlines()[0].split() == ["VIEW", "STATUS", "TABLE", "COLUMNS"]
    assert table.splitlines()[1].split()[:2] == ["tech", "v1"]


def test_server_status_exit_codes_are_documented() -> None:
    help_text = CliRunner().invoke(cli, ["server", "status", "--help"]).output
    assert "3 when it is stopped" in help_text
    main_help = CliRunner().invoke(cli, ["--help"]).output
    assert "Exit status:" in main_help and "3  `server status`" in main_help
