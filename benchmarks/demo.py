"""`featurestore demo` end to end, timed as a whole process (what a new user waits for).

Each run starts ``featurestore demo --home <fresh temporary dir> --json`` in a new process and
times it from outside: wall time (start to exit) and the CPU time the process and its children
used (``getrusage(RUSAGE_CHILDREN)`` deltas: the demo process and the children it waited for;
the embedded PostgreSQL server runs detached, so its CPU time is not included). Then the same command again on the same home (the idempotent second run: the
server and the data are already there), then ``--clean --yes``. First and second runs alternate
per repeat; medians are reported, with the demo's own step timings (from its ``--json`` report).

The numba kernels' on-disk cache is whatever this checkout has: warm after any earlier use (the
cold first compile is measured by ``benchmarks/indicators.py``, "First use of all 8 kernels").

Full mode: the demo's defaults (500 symbols x 1,260 days = 630k bars), 3 repeats. ``--quick``:
100 symbols x 1,260 days, 1 repeat (about a minute). Every run writes
``benchmarks/results/demo.{json,md}`` (see ``_results.py``); there is no alternative to compare
with, so this script only reports.

    python benchmarks/demo.py [--quick] [--repeats N] [--symbols N] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import Results, add_arguments

ROOT = Path(__file__).resolve().parents[1]


def demo_command() -> list[str]:
    """The installed ``featurestore`` console script, else ``python -m featurestore.cli``."""
    exe = shutil.which("featurestore", path=str(Path(sys.executable).parent)) or shutil.which("featurestore")
    return [exe] if exe else [sys.executable, "-m", "featurestore.cli"]


def timed_run(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd`` to completion; wall seconds, child CPU seconds, exit code, its JSON report."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "report": json.loads(proc.stdout),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 symbols, 1 repeat")
    ap.add_argument("--markdown", action="store_true", help="accepted for compatibility: output is always Markdown")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 (quick 1)")
    ap.add_argument("--symbols", type=int, default=None, help="default 500, the demo's own default (quick 100)")
    ap.add_argument("--days", type=int, default=1260)
    add_arguments(ap)
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    symbols = args.symbols or (100 if args.quick else 500)
    out = Results("demo", "`featurestore demo` end to end, as a whole process", quick=args.quick,
                  results_dir=args.results_dir)
    base = [*demo_command(), "demo", "--symbols", str(symbols), "--days", str(args.days), "--json"]
    out.setting("command", f"`featurestore demo --home <fresh dir> --symbols {symbols} --days {args.days} --json`, "
                f"{symbols * args.days:,} generated bars; {repeats} repeat(s)")
    runs: dict[str, list[dict[str, Any]]] = {"first": [], "second": []}
    for r in range(repeats):
        home = Path(tempfile.mkdtemp(prefix="fs-bench-demo-"))
        try:
            cmd = [*base, "--home", str(home / "demo")]
            for kind in ("first", "second"):
                res = timed_run(cmd)
                runs[kind].append(res)
                print(f"  .. repeat {r}: {kind} run {res['wall_s']:.1f} s wall, {res['cpu_s']:.1f} s CPU",
                      file=sys.stderr, flush=True)
        finally:
            subprocess.run([*demo_command(), "demo", "--home", str(home / "demo"), "--clean", "--yes"],
                           capture_output=True, check=False, cwd=ROOT)
            shutil.rmtree(home, ignore_errors=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[kind])

    def span(kind: str, key: str) -> str:
        vals = [x[key] for x in runs[kind]]
        return f"{min(vals):.1f}–{max(vals):.1f}" if len(vals) > 1 else "-"

    out.table(
        f"Whole process, medians of {repeats}",
        ["run", "wall s (median)", "wall range s", "CPU s (median; the demo process and the children it waited for, not the server)"],
        [
            ["first run into a fresh home (server init, migrate, generate, ingest, reads)",
             f"{med('first', 'wall_s'):.1f}", span("first", "wall_s"), f"{med('first', 'cpu_s'):.1f}"],
            ["second run, same home (idempotent: 0 inserted, 0 updated)",
             f"{med('second', 'wall_s'):.1f}", span("second", "wall_s"), f"{med('second', 'cpu_s'):.1f}"],
        ],
    )
    steps: dict[str, list[float]] = {}
    for res in runs["first"]:
        previous = ""
        for step in res["report"].get("steps", []):
            name = str(step["step"])
            if name.startswith(" "):  # "  again (cached)" repeats the step above it
                name = f"{previous}, {name.strip()}"
            else:
                previous = name
            steps.setdefault(name, []).append(float(step["seconds"]))
    out.table(
        "The demo's own step timings, first run (from its --json report; medians)",
        ["step", "s (median)"],
        [[name, f"{statistics.median(v):.3f}"] for name, v in steps.items()],
    )
    second = runs["second"][-1]["report"].get("steps", [])
    changed = [s for s in second if s.get("inserted") or s.get("updated")]
    out.say()
    out.say("Second run wrote nothing." if not changed else
            f"Second run WROTE: {', '.join(str(s['step']) for s in changed)}.")
    out.record("runs", {k: [{"wall_s": x["wall_s"], "cpu_s": x["cpu_s"], "steps": x["report"].get("steps")} for x in v]
                        for k, v in runs.items()})
    out.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
