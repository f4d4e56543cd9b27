"""featurestore bench: Markdown-table parsing, report assembly, plots, with tiny fake scripts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from featurestore import bench
from featurestore.bench import SCRIPTS, find_benchmarks_dir, parse_number, parse_tables, run_benchmarks
from featurestore.errors import ConfigError

SAMPLE = """\
# Title

Some text | with a pipe, not a table.

### Hit ratio (%) — zipf, 1,000 requests

| policy | 0.1% (100) | 1.0% (1000) |
|---|---:|---:|
| OPT | 40.1 | 60.2 |
| lru | 30.0 | 50.5 |
| best ours vs best lcs / vs OPT | +1.0 / -10.1 | +0.5 / -9.7 |

Throughput:
| cache | M req/s |
|:---|---:|
| lru | 3.1 |
| short row |
"""

LOAD_OUT = """\
## Write path
| scenario | s (median) | rows/s | x (a) |
|---|---:|---:|---:|
| (a) raw binary COPY | 4.34 | 230k | 1.00 |
| (b) store.ingest(df) | 6.31 | 159k | 0.69 |
| (e) executemany, 50,000 rows | 6.77 | 7k | 0.032 |
"""

CACHE_OUT = """\
### Hit ratio (%) — zipf-0.99, 10,000 requests, 1,000 distinct keys

| policy | 0.1% (100) | 1.0% (100) | 10.0% (100) |
|---|---:|---:|---:|
| OPT | 40.0 | 55.0 | 80.0 |
| lru | 30.0 | 45.0 | 70.0 |
| arc | 32.0 | 47.0 | 71.0 |
| lcs:LRU | 30.0 | 45.0 | 70.0 |
| best ours vs best lcs / vs OPT | +2.0 / -8.0 | +2.0 / -8.0 | +1.0 / -9.0 |

### Hit ratio (%) — loop, 10,000 requests, a loop over 1.1x each capacity

| policy | 0.1% (100) | 1.0% (100) |
|---|---:|---:|
| OPT | 90.0 | 90.0 |
| lru | 0.0 | 0.0 |
"""

READ_OUT = """\
### benchmarks/read.py --quick: 500 symbols x 1,000 bars, medians of 3

#### range read, 100 symbols

| what | value | unit | note |
|---|---:|---|---|
| featurestore get_features (pandas) | 1.40 | M rows/s | 0.071 s |
| pandas.read_sql (SQLAlchemy) | 0.20 | M rows/s | 0.5 s |
| ratio: read_sql time / ours (target >= 5) | 7.00 | x |  |

#### latest, 1 symbol

| what | value | unit | note |
|---|---:|---|---|
| held connection, prepared ORDER BY ts DESC LIMIT 1 | 112.50 | µs |  |
| featurestore get_latest(1 symbol) (pandas) | 180.00 | µs |  |
| featurestore get_latest(1,000 symbols) (pandas) | 22.70 | ms |  |
"""


def script(body: str) -> str:
    """A fake benchmark: prints ``body`` with --markdown, and the flags it got."""
    return textwrap.dedent(
        f"""\
        import argparse, sys
        ap = argparse.ArgumentParser()
        ap.add_argument("--quick", action="store_true")
        ap.add_argument("--markdown", action="store_true")
        args = ap.parse_args()
        print("flags:", " ".join(sys.argv[1:]))
        if args.markdown:
            print({body!r})
        """
    )


@pytest.fixture()
def fake_repo(tmp_path: Path) -> Path:
    """A checkout whose benchmarks/ holds load, cache and read fakes, a failing serialization, a
    pool without --quick, and no indicators.py."""
    bdir = tmp_path / "repo" / "benchmarks"
    bdir.mkdir(parents=True)
    (bdir / "load.py").write_text(script(LOAD_OUT))
    (bdir / "cache.py").write_text(script(CACHE_OUT))
    (bdir / "read.py").write_text(script(READ_OUT))
    (bdir / "serialization.py").write_text(
        "import sys\nprint('partial output, no table')\nprint('Traceback: boom', file=sys.stderr)\nsys.exit(3)\n"
    )
    (bdir / "pool.py").write_text(
        'import sys\nassert "--markdown" in sys.argv\nprint("| a | b |\\n|---|---|\\n| x | 1 |")\n'
    )
    return bdir


# -- parsing -----------------------------------------------------------------------------------


def test_parse_tables_finds_tables_titles_and_pads_rows() -> None:
    tables = parse_tables(SAMPLE)
    assert len(tables) == 2
    hit, thr = tables
    assert hit.title == "Hit ratio (%) — zipf, 1,000 requests"
    assert hit.headers == ["policy", "0.1% (100)", "1.0% (1000)"]
    assert [r[0] for r in hit.rows] == ["OPT", "lru", "best ours vs best lcs / vs OPT"]
    assert hit.column("1.0% (1000)") == ["60.2", "50.5", "+0.5 / -9.7"]
    assert thr.title == "Throughput"
    assert thr.rows == [["lru", "3.1"], ["short row", ""]]
    assert thr.find_column("m req") == 1 and thr.find_column("nope") is None
    with pytest.raises(KeyError):
        thr.column("nope")


def test_parse_tables_ignores_non_tables() -> None:
    assert parse_tables("") == []
    assert parse_tables("a | b\nno separator\n| x | y |") == []
    # a separator with a different number of cells is not a table
    assert parse_tables("| a | b |\n|---|\n| 1 | 2 |") == []
    # escaped pipes stay in the cell
    (t,) = parse_tables("| a | b |\n|---|---|\n| x \\| y | 2 |")
    assert t.rows == [["x \\| y", "2"]]


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("1,234", 1234.0), ("362k", 362e3), ("1.48M", 1.48e6), ("57.9", 57.9), ("0.96x", 0.96),
        ("12.3 ms", 12.3), ("**4.2**", 4.2), ("+1.0 / -8.0", 1.0), ("1.5e3", 1500.0), ("100%", 100.0),
        ("2 M rows/s", 2.0), ("-", None), ("n/a", None), ("", None), ("yes", None),
    ],
)
def test_parse_number(cell: str, value: float | None) -> None:
    assert parse_number(cell) == value


# -- running and the report --------------------------------------------------------------------


def test_report_assembly_without_plots(fake_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    lines: list[str] = []
    got = run_benchmarks(quick=True, output=out, plots=False, benchmarks_dir=fake_repo, log=lines.append)
    assert got == out
    text = out.read_text()
    # the summary: one row per script, in SCRIPTS order
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.split("|")[1].strip() in SCRIPTS]
    assert [r.split("|")[1].strip() for r in rows] == list(SCRIPTS)
    status = {r.split("|")[1].strip(): r.split("|")[2].strip() for r in rows}
    assert status == {
        "indicators": "missing", "load": "ok", "read": "ok", "cache": "ok",
        "serialization": "failed (exit 3)", "pool": "ok",
    }
    assert "`python benchmarks/load.py --quick --markdown`" in text
    assert "script has no --quick option" in text  # pool.py
    assert "flags: --quick --markdown" in text
    # each script's Markdown is embedded under its own section, tables intact
    assert "## benchmarks/load.py" in text and "| (b) store.ingest(df) | 6.31 | 159k | 0.69 |" in text
    assert "benchmarks/indicators.py does not exist" in text
    assert "Traceback: boom" in text and "partial output, no table" in text
    assert len(parse_tables(text)) == 1 + 1 + 2 + 2 + 1  # summary + load, cache, read, pool tables
    assert not list(tmp_path.glob("*.png"))
    assert any("load: ok" in line for line in lines) and "indicators: missing" in lines


def test_full_mode_and_only(fake_repo: Path, tmp_path: Path) -> None:
    out = run_benchmarks(quick=False, output=tmp_path / "r.md", only=["load"], plots=False, benchmarks_dir=fake_repo)
    text = out.read_text()
    assert "flags: --markdown" in text and "--quick" not in text
    assert "## benchmarks/cache.py" not in text
    with pytest.raises(ConfigError, match="unknown benchmark"):
        run_benchmarks(output=tmp_path / "r.md", only=["nope"], benchmarks_dir=fake_repo)
    with pytest.raises(ConfigError, match="is a directory"):
        run_benchmarks(output=tmp_path, benchmarks_dir=fake_repo)
    with pytest.raises(ConfigError, match="does not exist"):
        run_benchmarks(output=tmp_path / "no" / "r.md", benchmarks_dir=fake_repo)


def test_timeout_interrupts_the_script_and_keeps_its_output(tmp_path: Path) -> None:
    bdir = tmp_path / "benchmarks"
    bdir.mkdir()
    marker = tmp_path / "cleaned-up"
    (bdir / "load.py").write_text(textwrap.dedent(f"""\
        import time
        # --quick --markdown
        print("| scenario | rows/s |", flush=True)
        try:
            time.sleep(60)
        finally:
            open({str(marker)!r}, "w").close()  # the server-stopping finally blocks run
        """))
    out = run_benchmarks(output=tmp_path / "r.md", only=["load"], plots=False, timeout=1.5, benchmarks_dir=bdir)
    text = out.read_text()
    assert "| load | timeout |" in text and "stopped after 2 s" in text
    assert "| scenario | rows/s |" in text
    assert marker.exists()


def test_plots(fake_repo: Path, tmp_path: Path) -> None:
    import matplotlib  # noqa: F401 - a dev dependency (the plots extra)
    out = tmp_path / "report.md"
    run_benchmarks(output=out, benchmarks_dir=fake_repo)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == [
        "report-cache-hit-ratio.png", "report-load-rows-per-s.png",
        "report-read-latency.png", "report-read-throughput.png",
    ]
    for name in pngs:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = out.read_text()
    assert "![load-rows-per-s](report-load-rows-per-s.png)" in text
    # the failed script printed no table: its plot is skipped and the report says why
    assert "serialization: skipped, serialization.py printed no table" in text


def test_plot_skipped_when_table_missing(tmp_path: Path) -> None:
    import matplotlib  # noqa: F401 - a dev dependency (the plots extra)
    bdir = tmp_path / "benchmarks"
    bdir.mkdir()
    (bdir / "load.py").write_text(script("no tables here"))
    (bdir / "cache.py").write_text(script("| policy | x |\n|---|---|\n| lru | 1 |"))  # no 'Hit ratio' title
    out = run_benchmarks(output=tmp_path / "r.md", only=["load", "cache"], benchmarks_dir=bdir)
    text = out.read_text()
    assert "load-rows-per-s: skipped, load.py printed no table with 'scenario' and 'rows/s'" in text
    assert "cache-hit-ratio: skipped, cache.py printed no 'Hit ratio' table" in text
    assert not list(tmp_path.glob("*.png"))


def test_serialization_plot(tmp_path: Path) -> None:
    import matplotlib  # noqa: F401 - a dev dependency (the plots extra)
    table = (
        "### 1,000 rows\n\n| format | write s | read s | size MB | size / memory |\n|---|---:|---:|---:|---:|\n"
        "| Parquet (zstd) | 0.2 | 0.1 | 1.0 | 0.31 |\n| HDF5 (fixed) | - | - | - | - |\n"
    )
    bdir = tmp_path / "benchmarks"
    bdir.mkdir()
    (bdir / "serialization.py").write_text(script(table))
    run_benchmarks(output=tmp_path / "r.md", only=["serialization"], benchmarks_dir=bdir)
    assert (tmp_path / "r-serialization.png").read_bytes()[:4] == b"\x89PNG"


def test_no_matplotlib_is_noted(fake_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    out = run_benchmarks(output=tmp_path / "r.md", only=["load"], benchmarks_dir=fake_repo)
    assert "no plots: matplotlib is not installed" in out.read_text()


# -- locating the scripts ----------------------------------------------------------------------


def test_find_benchmarks_dir_in_this_checkout() -> None:
    found = find_benchmarks_dir()
    assert found == Path(bench.__file__).resolve().parent.parent / "benchmarks"
    for name in SCRIPTS:  # every script the runner knows exists and takes both flags
        path = found / f"{name}.py"
        assert path.is_file(), name
        assert bench._flags(path, quick=True) == (["--quick", "--markdown"], ""), name


def test_find_benchmarks_dir_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pkg = tmp_path / "site-packages" / "featurestore"
    fake_pkg.mkdir(parents=True)
    monkeypatch.setattr(bench, "__file__", str(fake_pkg / "bench.py"))
    with pytest.raises(ConfigError, match="source checkout"):
        find_benchmarks_dir(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "benchmarks").mkdir(parents=True)
    (tmp_path / "elsewhere" / "benchmarks" / "load.py").write_text("")
    want = (tmp_path / "elsewhere" / "benchmarks").resolve()
    assert find_benchmarks_dir(tmp_path / "elsewhere") == want
    assert find_benchmarks_dir(tmp_path / "elsewhere" / "sub" / "dir") == want  # from a subdirectory


def test_results_files_are_what_the_scripts_wrote() -> None:
    """Every benchmarks/results/*.md has its JSON beside it, written by a script here, and both READMEs quote them."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "benchmarks/_summary.py", "--check"], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_hand_edited_results_file_is_caught(tmp_path: Path) -> None:
    """The check compares each Markdown file with what its JSON says the script wrote."""
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    copy = tmp_path / "repo"
    shutil.copytree(repo / "benchmarks", copy / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(repo / "README.md", copy / "README.md")
    md = sorted((copy / "benchmarks" / "results").glob("*.md"))[0]
    md.write_text(md.read_text().replace("|", "| edited |", 3))
    done = subprocess.run(
        [sys.executable, "benchmarks/_summary.py", "--check"], cwd=copy, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0, done.stdout + done.stderr


def test_scale_plot(tmp_path: Path) -> None:
    import matplotlib  # noqa: F401 - a dev dependency (the plots extra)
    table = (
        "### Cost vs stored bars\n\n| measure | 1M | 10M | largest / smallest |\n|---|---:|---:|---:|\n"
        "| bulk load of the step, rows/s | 90,000 | 80,000 | 0.89x |\n"
        "|   rows in the step | 1,000,000 | 9,000,000 | 9.00x |\n"
        "| daily append, ms | 40.0 | 44.0 | 1.10x |\n"
        "| ours / ArcticDB time, bars | 1.2 | 1.1 | 0.92x |\n"
        "| stored bars | 1,000,000 | 10,000,000 | 10.00x |\n"
    )
    bdir = tmp_path / "benchmarks"
    bdir.mkdir()
    (bdir / "scale.py").write_text(script(table))
    text = run_benchmarks(output=tmp_path / "r.md", only=["scale"], benchmarks_dir=bdir).read_text()
    assert (tmp_path / "r-scale-cost-vs-size.png").read_bytes()[:4] == b"\x89PNG"
    assert "scale-cost-vs-size: skipped" not in text


def test_scale_plot_needs_two_sizes(tmp_path: Path) -> None:
    import matplotlib  # noqa: F401 - a dev dependency (the plots extra)
    table = "### Cost vs stored bars\n\n| measure | 1M | largest / smallest |\n|---|---:|---:|\n| stored bars | 1,000,000 | 1.00x |\n"
    bdir = tmp_path / "benchmarks"
    bdir.mkdir()
    (bdir / "scale.py").write_text(script(table))
    text = run_benchmarks(output=tmp_path / "r.md", only=["scale"], benchmarks_dir=bdir).read_text()
    assert "scale-cost-vs-size: skipped, scale.py printed no 'Cost vs stored bars' table with two sizes" in text
    assert not list(tmp_path.glob("*.png"))
