"""Run the project's benchmark scripts and gather their Markdown into one report (with plots).

The scripts live in ``benchmarks/`` of a source checkout (they are not in the wheel): each runs in
its own process with the current interpreter, with ``--quick`` (smaller sizes) and ``--markdown``
when it supports them, and its Markdown output becomes one section of the report. With
matplotlib installed (``pip install 'featurestore[plots]'``) PNG plots are written next to the
report, from the Markdown tables the scripts print: rows/s per load method (load.py), hit ratio
per policy and capacity (cache.py), read latency and throughput per method (read.py), and time
and size per format (serialization.py). A table that is not found is skipped, and the report
says so.

This is :func:`run_benchmarks`, what ``featurestore bench`` calls; :func:`parse_tables` and
:func:`parse_number` are the pieces the plots read the tables with.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurestore.errors import ConfigError

__all__ = [
    "SCRIPTS",
    "MarkdownTable",
    "ScriptRun",
    "find_benchmarks_dir",
    "parse_number",
    "parse_tables",
    "run_benchmarks",
]

# The scripts, in the order of the data path (compute, write, read, cache), then the cross-cutting
# ones. Each --quick run is meant to take about a minute on the 2-core development machine.
SCRIPTS = ("indicators", "load", "read", "cache", "serialization", "pool")

# -- Markdown tables -----------------------------------------------------------------------------

_SEP_CELL = re.compile(r"^:?-{3,}:?$")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


@dataclass
class MarkdownTable:
    """One pipe table: the heading (or paragraph line) above it, the header cells and the rows."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def find_column(self, *names: str) -> int | None:
        """Index of the first header that equals, or else contains, one of ``names`` (case-insensitive)."""
        lowered = [h.strip().lower() for h in self.headers]
        for name in names:
            if name.lower() in lowered:
                return lowered.index(name.lower())
        for name in names:
            for i, h in enumerate(lowered):
                if name.lower() in h:
                    return i
        return None

    def column(self, name: str) -> list[str]:
        i = self.find_column(name)
        if i is None:
            raise KeyError(f"no column {name!r} in {self.headers}")
        return [row[i] if i < len(row) else "" for row in self.rows]


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body.removeprefix("|")
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", body)]


def parse_tables(text: str) -> list[MarkdownTable]:
    """Every GitHub-style pipe table in ``text``, with the nearest heading or text line above it.

    A table is a header row, a separator row (``|---|---:|``) and the following ``|`` rows.
    Rows with fewer cells are padded with ``""``; anything that is not a table is ignored.
    """
    lines = text.splitlines()
    tables: list[MarkdownTable] = []
    title = ""
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        heading = _HEADING.match(line)
        if heading:
            title = heading.group(1)
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if "|" in line and nxt.count("-") >= 3 and "|" in nxt:
            sep = _cells(nxt)
            headers = _cells(line)
            if sep and all(_SEP_CELL.match(c) for c in sep) and len(sep) == len(headers):
                table = MarkdownTable(title=title, headers=headers)
                i += 2
                while i < len(lines) and lines[i].strip().startswith("|"):
                    row = _cells(lines[i])
                    table.rows.append((row + [""] * len(headers))[: len(headers)])
                    i += 1
                tables.append(table)
                continue
        if line and not heading and "|" not in line:
            title = line.rstrip(":")
        i += 1
    return tables


_NUMBER = re.compile(r"^[~≈<>]?\s*([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?)([kKMG](?![A-Za-z]))?")
_SCALE = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


def parse_number(cell: str) -> float | None:
    """The leading number of a table cell: ``"1,234"``, ``"362k"``, ``"1.48M"``, ``"57.9"``,
    ``"0.96x"``, ``"12.3 ms"``, ``"**4.2**"`` -> float; None when the cell does not start with one.

    Only a suffix letter glued to the number scales it (``"3 ms"`` is 3, ``"2M"`` is 2e6).
    """
    text = cell.strip().strip("*_`").strip()
    m = _NUMBER.match(text)
    if not m:
        return None
    return float(m.group(1).replace(",", "")) * _SCALE[m.group(2) or ""]


def _plain_number(cell: str) -> float | None:
    """:func:`parse_number` of a cell that holds only a number (and maybe a %), else None."""
    text = cell.strip().strip("*_`").strip()
    m = _NUMBER.match(text)
    if not m or text[m.end() :].strip() not in ("", "%"):
        return None
    return parse_number(text)


# -- running the scripts -------------------------------------------------------------------------


@dataclass
class ScriptRun:
    """One script's run: what was called, how it ended, and its output."""

    name: str
    path: Path | None
    args: list[str] = field(default_factory=list)
    status: str = "missing"  # "ok", "failed", "timeout", "missing"
    returncode: int | None = None
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""
    note: str = ""


def find_benchmarks_dir(start: Path | None = None) -> Path:
    """The ``benchmarks/`` directory of the source checkout this package runs from.

    Looked for beside the package (an editable install or a checkout on ``sys.path``), then in
    ``start`` (default: the current directory) and its parents. Raises ConfigError when there is
    none, e.g. under an installed wheel.
    """
    here = Path(__file__).resolve().parent.parent
    candidates = [here / "benchmarks"]
    base = (start or Path.cwd()).resolve()
    candidates += [d / "benchmarks" for d in (base, *base.parents)]
    for cand in candidates:
        if cand.is_dir() and any(cand.glob("*.py")):
            return cand
    raise ConfigError(
        "featurestore bench runs the scripts in benchmarks/ of a source checkout, which are not part "
        f"of the installed package; none found beside {here} or in {base} and its parents. Clone the "
        "repository and run it from there (pip install -e . inside the checkout)"
    )


def _flags(path: Path, quick: bool) -> tuple[list[str], str]:
    """The flags the script accepts among --quick and --markdown (read from its source)."""
    source = path.read_text(encoding="utf-8", errors="replace")
    args, missing = [], []
    wanted = ["--quick"] if quick else []
    wanted.append("--markdown")
    for flag in wanted:
        if re.search(rf"""["']{flag}["']""", source):
            args.append(flag)
        else:
            missing.append(flag)
    note = f"script has no {', '.join(missing)} option" if missing else ""
    return args, note


# The scripts write their results files (JSON + Markdown, see benchmarks/_results.py) into the
# directory this variable names; a bench run points it beside its report, so it never overwrites
# the committed benchmarks/results/.
RESULTS_ENV = "FEATURESTORE_BENCH_RESULTS"

# After a timeout the script gets SIGINT (KeyboardInterrupt runs its finally blocks, which stop
# the embedded servers the scripts start) and this long to exit before its group is killed.
_INTERRUPT_GRACE_S = 30.0


def _run(
    name: str, path: Path, args: list[str], timeout: float | None, cwd: Path, results_dir: Path | None = None
) -> ScriptRun:
    run = ScriptRun(name=name, path=path, args=args)
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    if results_dir is not None:
        env[RESULTS_ENV] = str(results_dir)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(path), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a timeout can stop all of it
    )
    try:
        run.stdout, run.stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            run.stdout, run.stderr = proc.communicate(timeout=_INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            run.stdout, run.stderr = proc.communicate()
        run.seconds = time.perf_counter() - start
        run.returncode = proc.returncode
        run.status = "timeout"
        run.note = f"stopped after {timeout:.0f} s"
        return run
    except BaseException:  # e.g. Ctrl-C in the caller: do not leave the script running
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=_INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    run.seconds = time.perf_counter() - start
    run.returncode = proc.returncode
    run.status = "ok" if proc.returncode == 0 else "failed"
    return run


def run_benchmarks(
    *,
    quick: bool = True,
    output: Path,
    only: Sequence[str] | None = None,
    plots: bool = True,
    timeout: float | None = None,
    benchmarks_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run the benchmark scripts, write one Markdown report to ``output``; return its path.

    ``quick`` passes ``--quick`` (minutes, not an hour); ``only`` names the scripts to run
    (``["load", "cache"]``; default all of :data:`SCRIPTS`, and a name not among the scripts found
    is a ConfigError); ``plots`` writes PNGs beside the report when matplotlib is importable;
    ``timeout`` stops a script after that many seconds (its partial output is kept). A script
    that is missing, fails or times out is reported as such and the others still run.
    ``log`` gets one line per script as it starts and ends (the CLI prints them).
    Each script's own results files (JSON + Markdown) go to ``<output stem>-results/`` beside
    the report, not to the checkout's ``benchmarks/results/``.
    """
    bench_dir = Path(benchmarks_dir) if benchmarks_dir is not None else find_benchmarks_dir()
    output = Path(output)
    if output.exists() and output.is_dir():
        raise ConfigError(f"output {str(output)!r} is a directory; pass a file name such as report.md")
    if not output.parent.is_dir():
        raise ConfigError(f"directory {str(output.parent)!r} does not exist")
    found = sorted(p.stem for p in bench_dir.glob("*.py") if not p.name.startswith("_"))
    known = list(dict.fromkeys([*SCRIPTS, *found]))
    if only is None:
        names = list(SCRIPTS)
    else:
        names = list(dict.fromkeys([only] if isinstance(only, str) else only))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"unknown benchmark(s) {unknown}; choose from {known}")
    say = log or (lambda _msg: None)
    results_dir = output.with_name(f"{output.stem}-results")
    started = dt.datetime.now().astimezone()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    runs: list[ScriptRun] = []
    for name in names:
        path = bench_dir / f"{name}.py"
        if not path.is_file():
            runs.append(ScriptRun(name=name, path=None, note=f"benchmarks/{name}.py does not exist (yet)"))
            say(f"{name}: missing")
            continue
        args, note = _flags(path, quick)
        say(f"{name}: running {path.name} {' '.join(args)}")
        run = _run(name, path, args, timeout, bench_dir.parent, results_dir)
        run.note = "; ".join(n for n in (note, run.note) if n)
        runs.append(run)
        say(f"{name}: {run.status} in {run.seconds:.0f} s")
    plot_notes: list[str] = []
    images: list[tuple[str, Path]] = []
    if plots:
        images, plot_notes = make_plots(runs, output)
    text = render_report(runs, quick=quick, started=started, load_before=load_before, images=images, plot_notes=plot_notes)
    output.write_text(text, encoding="utf-8")
    return output


def render_report(
    runs: Sequence[ScriptRun],
    *,
    quick: bool,
    started: dt.datetime,
    load_before: float,
    images: Sequence[tuple[str, Path]] = (),
    plot_notes: Sequence[str] = (),
) -> str:
    """The report's Markdown: a summary table of the runs, each script's output, then the plots."""
    total = sum(r.seconds for r in runs)
    lines = [
        "# featurestore benchmarks",
        "",
        (f"Run {started:%Y-%m-%d %H:%M %Z}{' with --quick' if quick else ''}: Python {platform.python_version()} "
        f"on {platform.system()} {platform.machine()}, {os.cpu_count()} cores, load average {load_before:.1f} "
        f"before the first script. Total {total:,.0f} s. The machine may be shared: compare numbers within a "
        "table (run back to back) rather than across reports."),
        "",
        "| script | status | seconds | command | note |",
        "|---|---|---:|---|---|",
    ]
    for r in runs:
        cmd = "`" + " ".join(["python", f"benchmarks/{r.name}.py", *r.args]) + "`" if r.path else "-"
        status = f"failed (exit {r.returncode})" if r.status == "failed" else r.status
        lines.append(f"| {r.name} | {status} | {r.seconds:,.0f} | {cmd} | {r.note} |")
    for r in runs:
        lines += ["", f"## benchmarks/{r.name}.py", ""]
        if r.status == "missing":
            lines.append(f"Not run: {r.note}.")
            continue
        out = r.stdout.strip()
        lines.append(out if out else "(no output)")
        if r.status != "ok":
            tail = "\n".join(r.stderr.strip().splitlines()[-20:])
            lines += ["", f"**{r.status}** ({r.note or f'exit {r.returncode}'}); last lines of stderr:", "", "```", tail, "```"]
    if images or plot_notes:
        lines += ["", "## Plots", ""]
        for title, path in images:
            lines += [f"![{title}]({path.name})", ""]
        for note in plot_notes:
            lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"


# -- plots ---------------------------------------------------------------------------------------


def make_plots(runs: Sequence[ScriptRun], output: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """PNG plots from the scripts' tables, beside ``output``; (images, notes on what was skipped)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: F401
    except ImportError:
        return [], ["no plots: matplotlib is not installed (pip install 'featurestore[plots]')"]
    by_name = {r.name: r for r in runs if r.stdout.strip()}  # partial output of a failure too
    images: list[tuple[str, Path]] = []
    notes: list[str] = []
    makers: list[tuple[str, str, Callable[[list[MarkdownTable], Path], str | None]]] = [
        ("load", "load-rows-per-s", _plot_load),
        ("cache", "cache-hit-ratio", _plot_cache),
        ("read", "read-latency", _plot_read_latency),
        ("read", "read-throughput", _plot_read_throughput),
        ("serialization", "serialization", _plot_serialization),
        ("scale", "scale-cost-vs-size", _plot_scale),
    ]
    for script, slug, maker in makers:
        run = by_name.get(script)
        if run is None:
            if any(r.name == script for r in runs):
                notes.append(f"{slug}: skipped, {script}.py produced no output")
            continue
        path = output.with_name(f"{output.stem}-{slug}.png")
        try:
            problem = maker(parse_tables(run.stdout), path)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            notes.append(f"{slug}: skipped, {problem}")
        else:
            images.append((slug, path))
    return images, notes


def _figure(n_rows: int, width: float = 9.0) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, max(2.5, 0.32 * n_rows + 1.2)))


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _barh(
    labels: list[str],
    values: list[float],
    title: str,
    xlabel: str,
    path: Path,
    log: bool = False,
    groups: list[str] | None = None,
) -> None:
    """Horizontal bars with value labels; ``groups`` colours the bars and adds a legend."""
    fig, ax = _figure(len(labels))
    y = list(range(len(labels)))
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3"]
    if groups:
        names = list(dict.fromkeys(groups))
        colors = [palette[names.index(g) % len(palette)] for g in groups]
    else:
        names, colors = [], ["#4c72b0"] * len(labels)
    ax.barh(y, values, color=colors)
    if names:
        from matplotlib.patches import Patch

        ax.legend([Patch(color=palette[i % len(palette)]) for i in range(len(names))],
                  [_short(n, 50) for n in names], fontsize=7, loc="best")
    ax.set_yticks(y, [_short(label) for label in labels], fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    for yi, v in zip(y, values):
        ax.text(v, yi, f" {_human(v)}", va="center", fontsize=7)
    _save(fig, path)


def _short(text: str, limit: int = 60) -> str:
    text = text.replace("`", "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _human(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k"
    return f"{v:.3g}"


def _plot_load(tables: list[MarkdownTable], path: Path) -> str | None:
    """rows/s per scenario, from load.py's table with 'scenario' and 'rows/s' columns."""
    for t in tables:
        si, ri = t.find_column("scenario"), t.find_column("rows/s")
        if si is None or ri is None:
            continue
        pairs = [(row[si], parse_number(row[ri])) for row in t.rows]
        pairs = [(label, v) for label, v in pairs if v is not None]
        if pairs:
            _barh([p[0] for p in pairs], [float(p[1]) for p in pairs],  # type: ignore[arg-type]
                  "benchmarks/load.py: rows/s per load method", "rows/s (log)", path, log=True)
            return None
    return "load.py printed no table with 'scenario' and 'rows/s' columns"


def _plot_cache(tables: list[MarkdownTable], path: Path) -> str | None:
    """Hit ratio (%) per policy (lines) and capacity (x), one panel per trace."""
    import matplotlib.pyplot as plt

    panels = [t for t in tables if "hit ratio" in t.title.lower() and t.find_column("policy") == 0 and len(t.headers) > 1]
    if not panels:
        return "cache.py printed no 'Hit ratio' table with a 'policy' column"
    cols = 2 if len(panels) > 1 else 1
    rows_n = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(6 * cols, 3.8 * rows_n), squeeze=False)
    for ax, t in zip(axes.flat, panels):
        caps = t.headers[1:]
        ax.set_prop_cycle(color=[plt.get_cmap("tab20")(i) for i in range(20)])
        for row in t.rows:
            values = [_plain_number(c) for c in row[1:]]
            if row[0] == "" or any(v is None for v in values):
                continue  # e.g. the "best ours vs best lcs / vs OPT" summary row
            style = {"color": "black", "linestyle": "--", "linewidth": 2} if row[0] == "OPT" else {}
            if row[0].startswith("lcs:"):
                style = {"linestyle": ":", "alpha": 0.6}
            ax.plot(range(len(caps)), values, marker="o", label=row[0], **style)
        ax.set_xticks(range(len(caps)), caps, fontsize=8)
        ax.set_ylabel("hit ratio %")
        ax.set_title(_short(t.title.replace("Hit ratio (%) — ", ""), 70), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=7)
    fig.suptitle("benchmarks/cache.py: hit ratio per policy and capacity (x: capacity)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


_TIME_UNITS = {"µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def _read_rows(tables: list[MarkdownTable], want: Callable[[str], bool]) -> list[tuple[str, str, float, str]]:
    out = []
    for t in tables:
        wi, vi, ui = t.find_column("what"), t.find_column("value"), t.find_column("unit")
        if None in (wi, vi, ui):
            continue
        for row in t.rows:
            unit = row[ui].strip()  # type: ignore[index]
            v = parse_number(row[vi])  # type: ignore[index]
            if v is not None and want(unit) and not row[wi].startswith("ratio"):  # type: ignore[index]
                out.append((t.title, row[wi], v, unit))  # type: ignore[index]
    return out


def _plot_read_latency(tables: list[MarkdownTable], path: Path) -> str | None:
    """Latency per method (ms, log scale), from read.py's what/value/unit tables in µs or ms."""
    rows = _read_rows(tables, lambda u: u in _TIME_UNITS)
    if not rows:
        return "read.py printed no what/value/unit rows in µs, ms or s"
    values = [v * _TIME_UNITS[u] for _, _, v, u in rows]
    _barh([r[1] for r in rows], values, "benchmarks/read.py: latency per method", "ms (log)", path, log=True,
          groups=[r[0] for r in rows])
    return None


def _plot_read_throughput(tables: list[MarkdownTable], path: Path) -> str | None:
    """Range-read throughput per method (rows/s), from read.py's rows in 'M rows/s'."""
    rows = _read_rows(tables, lambda u: u.lower().endswith("rows/s"))
    if not rows:
        return "read.py printed no rows in rows/s"
    scale = {"m rows/s": 1e6, "k rows/s": 1e3, "rows/s": 1.0}
    values = [v * scale.get(u.lower(), 1.0) for _, _, v, u in rows]
    _barh([r[1] for r in rows], values, "benchmarks/read.py: range reads, rows/s per method", "rows/s (log)", path,
          log=True, groups=[r[0] for r in rows])
    return None


def _plot_serialization(tables: list[MarkdownTable], path: Path) -> str | None:
    """Round-trip time and size ratio per format, from serialization.py's largest table."""
    import matplotlib.pyplot as plt

    cands = [t for t in tables if t.find_column("format") == 0 and t.find_column("write s") is not None]
    if not cands:
        return "serialization.py printed no table with 'format' and 'write s' columns"
    t = cands[-1]  # the largest size comes last
    wi, ri, zi = t.find_column("write s"), t.find_column("read s"), t.find_column("size / memory")
    pts = []
    for row in t.rows:
        w, r = parse_number(row[wi]), parse_number(row[ri])  # type: ignore[index]
        z = parse_number(row[zi]) if zi is not None else None
        if w is not None and r is not None:
            pts.append((row[0], w, r, z))
    if not pts:
        return "the serialization table has no measured rows"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, max(3.0, 0.32 * len(pts) + 1.2)))
    y = list(range(len(pts)))
    # side by side, not stacked: stacked bars mislead on a log axis
    ax1.barh([v - 0.2 for v in y], [p[1] for p in pts], height=0.4, label="write", color="#4c72b0")
    ax1.barh([v + 0.2 for v in y], [p[2] for p in pts], height=0.4, label="read", color="#dd8452")
    ax1.set_yticks(y, [_short(p[0], 40) for p in pts], fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xscale("log")
    ax1.set_xlabel("seconds (log)")
    ax1.legend(fontsize=8)
    ax2.barh(y, [p[3] or 0.0 for p in pts], color="#55a868")
    ax2.set_yticks(y, [""] * len(pts))
    ax2.invert_yaxis()
    ax2.set_xlabel("size on disk / size in memory")
    fig.suptitle(f"benchmarks/serialization.py: {_short(t.title, 80)}", fontsize=10)
    _save(fig, path)
    return None


_SCALE_NOT_COSTS = ("stored bars", "rows in the step", "rows returned", "hand pipeline")


def _plot_scale(tables: list[MarkdownTable], path: Path) -> str | None:
    """Cost vs stored bars (log-log), from scale.py's 'Cost vs stored bars' table.

    Each measure is drawn relative to its value at the smallest size, so a flat line is a cost
    that does not grow with the store; rates (rows/s) are inverted into time per row first.
    """
    import matplotlib.pyplot as plt

    t = next((t for t in tables if t.title.lower().startswith("cost vs stored bars")), None)
    if t is None or len(t.headers) < 4:
        return "scale.py printed no 'Cost vs stored bars' table with two sizes or more"
    cols = list(range(1, len(t.headers) - 1))  # between 'measure' and 'largest / smallest'
    stored = next((r for r in t.rows if r[0].strip() == "stored bars"), None)
    if stored is None:
        return "the scale table has no 'stored bars' row"
    parsed = [parse_number(stored[c]) for c in cols]
    xs = [x for x in parsed if x is not None and x > 0]
    if len(xs) != len(cols):
        return "the scale table's stored bars are not numbers"
    series: list[tuple[str, list[float]]] = []
    for row in t.rows:
        name = row[0].strip()
        if name.startswith(_SCALE_NOT_COSTS) or " / " in name or "ArcticDB" in name:
            continue  # the x axis, row counts, ratios and the peer's own figures are not our costs
        vals = [parse_number(row[c]) for c in cols]
        if any(v is None or v <= 0 for v in vals):
            continue
        fvals = [float(v) for v in vals]  # type: ignore[arg-type]
        if "rows/s" in name:
            fvals = [1.0 / v for v in fvals]
            name = name.replace("rows/s", "time per row")
        series.append((name, [v / fvals[0] for v in fvals]))
    if not series:
        return "the scale table has no measures with positive values at every size"
    fig, ax = plt.subplots(figsize=(11, 6.5))
    colors = plt.get_cmap("tab10")
    for i, (name, rel) in enumerate(series):  # 10 colours x 3 line styles keep ~30 series apart
        ax.plot(xs, rel, marker="os^"[i // 10 % 3], linestyle=("-", "--", ":")[i // 10 % 3], color=colors(i % 10),
                label=_short(name, 70))
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("stored bars (log)")
    ax.set_ylabel("cost relative to the smallest size (log; 1 = flat)")
    ax.set_title("benchmarks/scale.py: cost vs stored bars", fontsize=10)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)
    return None
