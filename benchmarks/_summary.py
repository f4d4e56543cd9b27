"""Rewrite the "Where we stand" table of benchmarks/README.md from the results/*.json files.

Every target line (PASS or MISS) of every results file, with the file's mode, date and load
average, between the ``<!-- summary:start -->`` and ``<!-- summary:end -->`` markers. Run it
after rerunning benchmarks, so the README quotes what the scripts wrote:

    python benchmarks/_summary.py [--check]

``--check`` writes nothing and exits 1 when the README's table differs from the results files,
or when a results file was not written by a script: every ``results/<name>.md`` needs its
``<name>.json`` and must begin as ``_results.py`` writes it, naming ``benchmarks/<script>.py``,
a script that exists here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
START, END = "<!-- summary:start -->", "<!-- summary:end -->"
ORDER = ["indicators", "load", "read", "cache", "cache-store", "pool", "serialization", "concurrency", "demo", "soak"]


def _measured(check: dict[str, object]) -> str:
    value = round(float(check["measured"]), 4) + 0.0  # type: ignore[arg-type]
    unit = str(check["unit"])
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.1f} {unit}" if abs(value) >= 1 or value == 0 else f"{value:,.3g} {unit}"


def summary(results_dir: Path = HERE / "results") -> str:
    """The Markdown: one line per results file, then every target line."""
    files = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(results_dir.glob("*.json"))}
    names = [n for n in ORDER if n in files] + sorted(n for n in files if n not in ORDER)
    lines = [
        "| results file | mode | written (UTC) | load average start / end | targets met |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        d = files[n]
        checks = d.get("checks", [])
        met = f"{sum(c['status'] == 'PASS' for c in checks)} of {len(checks)}" if checks else "report only"
        lines.append(f"| [{n}](results/{n}.md) | {d['mode']} | {d['started_utc'][:16].replace('T', ' ')} | "
                     f"{d['loadavg_start'][0]:.1f} / {d['loadavg_end'][0]:.1f} | {met} |")
    lines += ["", "| script | claim | measured | target | status |", "|---|---|---|---|---|"]
    for n in names:
        for c in files[n].get("checks", []):
            status = "PASS" if c["status"] == "PASS" else "**MISS**"
            lines.append(f"| {n} | {c['what']} | {_measured(c)} | {c['target']} | {status} |")
    return "\n".join(lines)


def provenance_problems(results_dir: Path = HERE / "results") -> list[str]:
    """Results files that no script here wrote (see ``--check``)."""
    problems = []
    for md in sorted(results_dir.glob("*.md")):
        lines = md.read_text(encoding="utf-8").splitlines()
        written = lines[2] if len(lines) > 2 else ""
        script = written.split("`python ", 1)[-1].split(" ", 1)[0] if written.startswith("Written by `python ") else ""
        if not md.with_suffix(".json").is_file():
            problems.append(f"{md.name}: no {md.stem}.json beside it")
        if not script.startswith("benchmarks/") or not (HERE.parent / script).is_file():
            problems.append(f"{md.name}: does not start as benchmarks/_results.py writes it (no 'Written by `python benchmarks/<script>.py'")
    for js in sorted(results_dir.glob("*.json")):
        if not js.with_suffix(".md").is_file():
            problems.append(f"{js.name}: no {js.stem}.md beside it")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when the README is stale")
    args = ap.parse_args(argv)
    readme = HERE / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"{readme}: markers {START} / {END} not found", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{summary()}\n{END}{tail}"
    if args.check:
        problems = provenance_problems()
        if new != text:
            problems.append("benchmarks/README.md is stale: run python benchmarks/_summary.py")
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    readme.write_text(new, encoding="utf-8")
    print(f"wrote the summary into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
