"""Write a benchmark's results files: ``results/<name>.json`` and ``results/<name>.md``.

Every script in ``benchmarks/`` uses this module so that each results file is exactly what a
script wrote, never a hand-edited table. A script opens a :class:`Results`, prints its report
through :meth:`Results.say` / :meth:`Results.table` (both echo to stdout, so ``featurestore
bench`` and a terminal see the same Markdown), records targets with :meth:`Results.check`, and
calls :meth:`Results.write` at the end. The Markdown file holds a header (UTC date, the exact
command and mode, the versions of every package involved, the machine, the load average at start
and end) followed by the body the script printed; the JSON file holds the same metadata, the
tables as header/row lists, the checks and any raw numbers the script adds with
:meth:`Results.record`.

Where the files go: ``--results-dir`` if the script passes it, else the environment variable
``FEATURESTORE_BENCH_RESULTS`` (``featurestore bench`` sets it next to its report so a bench run
never overwrites the committed files), else ``benchmarks/results/``.

This is development tooling: it lives beside the scripts, not in the ``featurestore`` package.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "results"
ENV_DIR = "FEATURESTORE_BENCH_RESULTS"

# Distributions whose versions every results file states (installed or not).
PACKAGES = (
    "featurestore", "numpy", "pandas", "numba", "pyarrow", "psycopg", "psycopg-binary", "sqlalchemy",
    "adbc-driver-postgresql", "adbc-driver-manager", "TA-Lib", "cachetools", "libcachesim",
)


def package_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Installed version of each distribution in :data:`PACKAGES` plus ``extra`` ("not installed")."""
    out = {"python": platform.python_version()}
    for dist in (*PACKAGES, *extra):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> dict[str, Any]:
    """CPU count, model, memory and OS of this machine."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(), "machine": platform.machine()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    except OSError:
        pass
    return info


def loadavg() -> list[float]:
    """The 1, 5 and 15-minute load averages (NaNs where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return [float("nan")] * 3


def add_arguments(parser: Any) -> None:
    """Add ``--results-dir`` (where to write the results files) to an argparse parser."""
    parser.add_argument("--results-dir", type=Path, default=None,
                        help=f"where to write <name>.json and <name>.md (default ${ENV_DIR} or benchmarks/results)")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub pipe table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Results:
    """One script run's report: printed as it goes, written to results/<name>.{json,md} at the end."""

    def __init__(
        self,
        name: str,
        title: str,
        *,
        quick: bool,
        results_dir: Path | None = None,
        extra_packages: Sequence[str] = (),
        echo: bool = True,
    ) -> None:
        self.name, self.title, self.quick, self.echo = name, title, quick, echo
        self.dir = Path(results_dir or os.environ.get(ENV_DIR) or DEFAULT_DIR)
        self.started = dt.datetime.now(dt.UTC)
        self.load_start = loadavg()
        self.command = "python " + " ".join(shlex.quote(a) for a in [_rel(sys.argv[0]), *sys.argv[1:]])
        self.versions = package_versions(extra_packages)
        self.machine = machine()
        self.notes: dict[str, Any] = {}
        self.body: list[str] = []
        self.tables: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] = []
        self.data: dict[str, Any] = {}

    # -- what the script reports ----------------------------------------------------------------

    def setting(self, key: str, value: Any) -> None:
        """A fact of the setup (server version, sizes, repeats) for the header and the JSON."""
        self.notes[key] = value

    def say(self, text: str = "") -> None:
        """A line of the report's body (Markdown), echoed to stdout."""
        self.body.append(text)
        if self.echo:
            print(text, flush=True)

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], *, level: int = 3) -> None:
        """A titled table in the body and in the JSON."""
        rows = [[str(c) for c in r] for r in rows]
        self.tables.append({"title": title, "headers": [str(h) for h in headers], "rows": rows})
        self.say()
        self.say(f"{'#' * level} {title}")
        self.say()
        self.say(md_table(headers, rows))

    def check(self, what: str, measured: float, target: str, passed: bool, unit: str = "x", note: str = "") -> bool:
        """A target line: what, measured value, target text, PASS/MISS; kept for a summary table."""
        self.checks.append({"what": what, "measured": measured, "unit": unit, "target": target,
                            "status": "PASS" if passed else "MISS", "note": note})
        return passed

    def record(self, key: str, value: Any) -> None:
        """Raw numbers for the JSON only (e.g. every repeat's seconds)."""
        self.data[key] = value

    # -- writing --------------------------------------------------------------------------------

    def checks_table(self) -> None:
        """Print the checks recorded so far as a 'Targets' table."""
        if not self.checks:
            return
        rows = [[c["what"], _fmt(c["measured"], c["unit"]), c["target"], f"**{c['status']}**", c["note"]]
                for c in self.checks]
        self.table("Targets", ["claim", "measured", "target", "status", "note"], rows)

    def parsed_tables(self) -> list[dict[str, Any]]:
        """Every pipe table of the body (also those a script printed as text), with its title."""
        try:
            from featurestore.bench import parse_tables
        except ImportError:
            return self.tables
        return [{"title": t.title, "headers": t.headers, "rows": t.rows} for t in parse_tables("\n".join(self.body))]

    def header(self, load_end: list[float]) -> list[str]:
        v = self.versions
        lines = [
            f"# {self.title}",
            "",
            (f"Written by `{self.command}` ({'quick' if self.quick else 'full'} mode) on "
             f"{self.started:%Y-%m-%d %H:%M} UTC; do not edit by hand, rerun the script."),
            "",
            "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
            (f"- machine: {self.machine.get('cpus')} CPUs ({self.machine.get('cpu_model', 'unknown model')}), "
             f"{self.machine.get('memory_gib', '?')} GiB, {self.machine.get('platform')}"),
            (f"- load average (1/5/15 min): {_la(self.load_start)} at start, {_la(load_end)} at end "
             "(the machine is shared: read ratios and medians, not absolute times)"),
        ]
        lines += [f"- {k}: {val}" for k, val in self.notes.items()]
        return lines

    def write(self) -> tuple[Path, Path]:
        """Write ``<name>.json`` and ``<name>.md``; return their paths."""
        load_end = loadavg()
        finished = dt.datetime.now(dt.UTC)
        self.dir.mkdir(parents=True, exist_ok=True)
        md_path, json_path = self.dir / f"{self.name}.md", self.dir / f"{self.name}.json"
        text = "\n".join([*self.header(load_end), "", *self.body]).rstrip() + "\n"
        md_path.write_text(text, encoding="utf-8")
        payload = {
            "name": self.name,
            "title": self.title,
            "command": self.command,
            "mode": "quick" if self.quick else "full",
            "started_utc": self.started.isoformat(timespec="seconds"),
            "finished_utc": finished.isoformat(timespec="seconds"),
            "seconds": round((finished - self.started).total_seconds(), 1),
            "versions": self.versions,
            "machine": self.machine,
            "loadavg_start": self.load_start,
            "loadavg_end": load_end,
            "settings": self.notes,
            "checks": self.checks,
            "tables": self.parsed_tables(),
            "data": self.data,
            # what the script wrote into the Markdown file: `_summary.py --check` refuses an edited one
            "markdown_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
        json_path.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n", encoding="utf-8")
        print(f"wrote {_rel(str(md_path))} and {json_path.name}", file=sys.stderr, flush=True)
        return json_path, md_path


def _rel(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(HERE.parent))
    except ValueError:
        return path


def _la(v: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in v)


def _fmt(value: float, unit: str) -> str:
    value = round(float(value), 4) + 0.0  # no -0 or 1e-15 noise
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.1f} {unit}" if abs(value) >= 1 or value == 0 else f"{value:,.3g} {unit}"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, (Path, dt.datetime)):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
