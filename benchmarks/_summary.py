"""Rewrite the "Where we stand" table of benchmarks/README.md from the results/*.json files.

Every target line (PASS or MISS) of every results file, with the file's mode, date and load
average, between the ``<!-- summary:start -->`` and ``<!-- summary:end -->`` markers. Run it
after rerunning benchmarks, so the README quotes what the scripts wrote:

    python benchmarks/_summary.py [--check]

``--readme-rows`` prints the top-level README's benchmark table with every figure read from the
results files, to paste into README.md after a rerun.

``--check`` writes nothing and exits 1 when either README's table differs from the results files,
or when a results file was not written by a script: every ``results/<name>.md`` needs its
``<name>.json`` and must begin as ``_results.py`` writes it, naming ``benchmarks/<script>.py``,
a script that exists here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
START, END = "<!-- summary:start -->", "<!-- summary:end -->"
ORDER = ["indicators", "load", "read", "knowledge_time", "float32_size", "scale", "scale_store", "scale_load", "segments", "serving", "distributed", "cache", "cache-store", "pool", "serialization",
         "concurrency", "demo", "soak"]


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


# -- the README's benchmark table ----------------------------------------------------------------


class _Files:
    """Lookups into the results files; anything missing reads as "n/a"."""

    def __init__(self, results_dir: Path) -> None:
        self.d = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(results_dir.glob("*.json"))}

    def table(self, name: str, title: str) -> dict[str, object] | None:
        for t in self.d.get(name, {}).get("tables", []):
            if title.lower() in t["title"].lower():
                return t  # type: ignore[no-any-return]
        return None

    def cell(self, name: str, title: str, row: str, col: str | int) -> str:
        t = self.table(name, title)
        if t is None:
            return "n/a"
        headers = [h.lower() for h in t["headers"]]  # type: ignore[attr-defined]
        i = col if isinstance(col, int) else next((k for k, h in enumerate(headers) if col.lower() in h), None)
        for r in t["rows"]:  # type: ignore[attr-defined]
            if row.lower() in r[0].lower() and i is not None and i < len(r):
                return str(r[i])
        return "n/a"

    def checks(self, name: str, what: str) -> list[dict[str, object]]:
        return [c for c in self.d.get(name, {}).get("checks", []) if what.lower() in str(c["what"]).lower()]

    def check(self, name: str, what: str, suffix: str = "") -> str:
        """The first check whose claim contains ``what``: its value, ``suffix``, and ": **missed**" on a MISS."""
        found = self.checks(name, what)
        if not found:
            return "n/a"
        c = found[0]
        text = _measured(c) + suffix
        return text if c["status"] == "PASS" else f"{text}: **missed**"


def _indicator_ratios(f: _Files, what: str, missed_if_fail: bool = True) -> str:
    parts = []
    for c in f.checks("indicators", what):
        label = str(c["what"]).split(",")[0].split("_")[0].upper()
        v = _measured(c)
        parts.append(f"**{label} {v}**" if c["status"] != "PASS" and missed_if_fail else f"{label} {v}")
    return ", ".join(parts) or "n/a"


def _kt(f: _Files, prefix: str) -> str:
    """Knowledge-time checks starting with ``prefix``: their reads and ratios (bold: missed)."""
    parts = []
    for c in f.checks("knowledge_time", prefix):
        label = str(c["what"]).split(": ", 1)[-1].split(" (")[0]
        v = _measured(c)
        parts.append(f"{label} {v}" if c["status"] == "PASS" else f"**{label} {v}**")
    return (", ".join(parts) + " (bold: missed)") if parts else "n/a"


def _listed(checks: list[dict[str, object]], label: Any) -> str:
    """Checks as "label value" (bold: missed)."""
    parts = []
    for c in checks:
        text = f"{label(str(c['what']))} {_measured(c)}"
        parts.append(text if c["status"] == "PASS" else f"**{text}**")
    return (", ".join(parts) + " (bold: missed)") if parts else "n/a"


def _scale_rows(f: _Files, link: dict[str, str]) -> list[tuple[str, str, str, str, str]]:
    """The README rows of benchmarks/scale.py (and its --on-store results), when they exist."""
    if "scale" not in f.d:
        return []
    sizes = list(f.d["scale"].get("data", {}).get("sizes", {}))
    span = f"{sizes[0]} to {sizes[-1]}" if sizes else "n/a"
    grows = [c for c in f.d["scale"].get("checks", []) if f"{sizes[-1]} / {sizes[0]}" in str(c["what"])]
    rows = [
        (f"scale: cost as the store grows {span} stored bars {link['scale']}",
         "load, append, correct, range reads, latest, sparse training frame", f"the same operation at {sizes[0] if sizes else 'n/a'}",
         _listed(grows, lambda w: w.split(", " + f"{sizes[-1]} / {sizes[0]}")[0].replace(", time", "")),
         "<= 1.3x (append, correct, latest); rows/s 0.8–1.25x (range); >= 0.8x (load); <= 1.5x (sparse)"),
        (f"scale: full history and storage at {sizes[-1] if sizes else 'n/a'} {link['scale']}",
         "`get_bars` / `get_features`, 100 symbols; bars table + indexes", "ArcticDB `read_batch`; its LMDB bytes",
         _listed(f.checks("scale", "ArcticDB"), lambda w: w.split(":")[0].split(" at ")[0]), "<= 1.0x; <= 1.5x"),
        (f"scale: training frames at {sizes[-1] if sizes else 'n/a'} {link['scale']}", "`get_training_frame`",
         "ADBC read of the 3 columns and time range + `pandas.merge_asof`",
         _listed(f.checks("scale", "hand pipeline"), lambda w: w.split(" at ")[0].replace("training frame ", "")),
         "dense <= 1.2x; sparse >= 10x"),
    ]
    if "scale_load" in f.d:
        lt = f.table("scale_load", "-row load")
        title = str(lt["title"]) if lt else "n/a"
        cost = f.table("scale", "cost vs stored bars")
        before = next((r[-2] for r in (cost or {}).get("rows", []) if r[0].startswith("peak RSS")), "n/a")  # type: ignore[attr-defined]

        def lc(row: str) -> str:
            return f.cell("scale_load", "-row load", row, 1)

        rows.append((
            f"scale: {title.removeprefix('A ').split(' (')[0]} {link['scale_load']}",
            f"`FeatureStore.load` of Parquet files in a fresh process, default `load_memory_rows` ({lc('load_memory_rows')} rows)",
            f"the last step of the full scale run, before the bound: {before} MiB",
            f"peak RSS {lc('peak RSS')} MiB; at most {lc('most bar rows')} rows held; {lc('rows/s')} rows/s", "bounded"))
    if "scale_store" in f.d:
        ab = f.table("scale_store", "default settings")
        rows.append((
            f"scale: training strategy choice and `info` on the largest store {link['scale_store']}",
            "`strategy=\"auto\"`; `FeatureStore.info()`", "each strategy forced",
            _listed(f.checks("scale_store", ""), lambda w: w.split(" at ")[0].replace("training frame ", "")),
            "<= 1.15x the faster; < 1 s"))
        rows.append((
            f"scale: the embedded server's settings {link['scale_store']}",
            "random_page_cost 1.1, effective_cache_size, work_mem sized from RAM", "PostgreSQL's defaults, same server",
            ("speed-up " + ", ".join(f"{r[0]} {r[-1]}" for r in ab["rows"])) if ab else "n/a",  # type: ignore[index, attr-defined]
            "report"))
    return rows


def _segment_rows(f: _Files, link: dict[str, str]) -> list[tuple[str, str, str, str, str]]:
    """The README row of benchmarks/segments.py, when its results exist."""
    rows: list[tuple[str, str, str, str, str]] = []
    if "segments" in f.d:

        def cell(title: str, row: str, col: int) -> str:
            return f.cell("segments", title, row, col)

        rows.append((
            f"history segments (`compress_history`) {link['segments']}",
            (f"segments: bars {cell('bytes per bar row', 'bars: history segments', 1)} B/row; 100 symbols' whole history "
             f"{cell('read speed', 'bars, whole history', 3)} rows/s (bars), "
             f"{cell('read speed', 'view (11 features), whole history', 3)} rows/s (11 features)"),
            (f"rows layout {cell('bytes per bar row', 'bars: rows layout', 1)} B/row, "
             f"{cell('read speed', 'bars, whole history', 2)} rows/s; "
             f"ArcticDB {cell('bytes per bar row', 'ArcticDB', 1)} B/row, {cell('read speed', 'bars, whole history', 5)} / "
             f"{cell('read speed', 'view (11 features), whole history', 5)} rows/s"),
            _listed(f.checks("segments", "ArcticDB"),
                    lambda w: "bytes" if "bytes" in w else w.split(":")[0].split(",")[0] + " read time"),
            "<= 1.5x; <= 1.0x"))
    return rows


def _serving_rows(f: _Files, link: dict[str, str]) -> list[tuple[str, str, str, str, str]]:
    """The README rows of benchmarks/serving.py, when its results exist."""
    if "serving" not in f.d:
        return []
    one = f.table("serving", "one requester")
    conc = f.table("serving", "concurrent requesters")
    top = conc["rows"][-1][0] if conc else "n/a"  # type: ignore[index]

    def p50(call: str) -> str:
        return f.cell("serving", "one requester", call, 1)

    def tput(variant: str) -> str:
        return next((r[2] for r in (conc or {}).get("rows", []) if r[0] == top and r[1].startswith(variant)), "n/a")  # type: ignore[attr-defined]

    del one
    return [
        (f"serving: one-symbol latest, uncached {link['serving']}",
         f"`get_latest` {p50('get_latest, pandas')} µs (pandas), {p50('get_latest, as_dict')} µs (`as_dict`); "
         f"`AsyncFeatureStore` {p50('AsyncFeatureStore')} µs",
         f"a held prepared psycopg query {p50('held prepared')} µs (p50)",
         _listed(f.checks("serving", "one-symbol"), lambda w: w.split("p50, ")[-1].split(" /")[0]), "<= 2x"),
        (f"serving: {top} concurrent requesters {link['serving']}",
         f"`AsyncFeatureStore`, coalesced: {tput('(c)')} answers/s; `FeatureStore` threads {tput('(b)')}",
         f"one statement per call on an asyncio pool: {tput('(a)')} answers/s; Feast's online store {tput('(d)')}",
         _listed(f.checks("serving", "at "), lambda w: w.split(" requesters")[0]), ">= 5x; p99 <= 5 ms"),
    ]


def readme_rows(results_dir: Path = HERE / "results") -> str:
    """The README's benchmark table, every figure read from the results files (paste it there)."""
    f = _Files(results_dir)
    link = {n: f"([{n}](benchmarks/results/{n}.md))" for n in f.d}
    ind_case = next((c["what"].split("batched ")[1].split(":")[0] for c in f.checks("indicators", "batched")), "n/a")  # type: ignore[union-attr, attr-defined]
    upd = f.checks("indicators", "talib.stream")
    upd_vals = [float(c["measured"]) for c in upd]  # type: ignore[arg-type]
    pandas_vals = [float(c["measured"]) for c in f.checks("indicators", "pandas / ours")]  # type: ignore[arg-type]
    load_title = "bulk load of"
    bulk = f.table("load", load_title)
    n_rows = str(bulk["title"]).split("Bulk load of ")[1].split(" rows")[0] if bulk else "n/a"

    def ceiling(key: str) -> str:
        return f.cell("load", load_title, key, "rows/s")

    lm = f.table("read", "symbols (one call)")
    many = str(lm["title"]).split("latest row, ")[1].split(" symbols")[0] if lm else "n/a"
    fe = f.table("read", "like with like")
    fe_n = str(fe["title"]).split("the same ")[1].split(" events")[0] if fe else "n/a"
    tf = f.table("read", "training frame,")
    tf_n = str(tf["title"]).split("training frame, ")[1].split(" events")[0] if tf else "n/a"
    demo_t = f.d.get("demo", {}).get("settings", {}).get("command", "")
    m = re.search(r"--symbols (\d+) --days (\d+)", demo_t)
    demo_bars = f"{int(m.group(1)):,} symbols x {int(m.group(2)):,} days" if m else "n/a"
    comp = f.table("indicators", "first use")

    def compile_s(kind: str) -> str:
        vals = [r[3] for r in (comp or {}).get("rows", []) if r[1].startswith(kind)]  # type: ignore[attr-defined]
        return "–".join(sorted(vals, key=float)) if len(vals) > 1 else (vals[0] if vals else "n/a")
    ser = [t for t in f.d.get("serialization", {}).get("tables", []) if t["headers"][:1] == ["format"]]
    ser_t = ser[-1] if ser else None
    ser_n = ser_t["title"].split(" rows")[0] if ser_t else "n/a"

    def ser_cell(row: str, col: int) -> str:
        if ser_t is None:
            return "n/a"
        return next((r[col] for r in ser_t["rows"] if r[0].startswith(row)), "n/a")

    rows = [
        ("what (results file)", "featurestore", "alternative", "ratio", "target"),
        (f"indicators, {ind_case} bars, one batched call {link.get('indicators', '')}", "numba kernels, all symbols in one call",
         "TA-Lib, one call per symbol", f"time ratio {_indicator_ratios(f, 'per-symbol calls')} (bold: missed; bit-identical results)", "<= 0.9x"),
        (f"indicators vs pandas formulations {link.get('indicators', '')}", "", "`rolling` / `ewm`, per symbol",
         f"pandas {min(pandas_vals):.0f}–{max(pandas_vals):.0f}x slower" if pandas_vals else "n/a", ">= 5x"),
        (f"one new bar per symbol {link.get('indicators', '')}", "`update_batch`", "`talib.stream` per symbol",
         (f"{min(upd_vals):.1f}–{max(upd_vals):.1f}x faster" + (": **missed**" if any(c["status"] != "PASS" for c in upd) else ""))
         if upd_vals else "n/a", ">= 30x"),
        (f"first use of the 8 kernels in a fresh process {link.get('indicators', '')}",
         f"{compile_s('cold')} s to compile (empty cache); {compile_s('warm')} s to load from the disk cache",
         "", "", "report"),
        (f"bulk load, bars only, {n_rows} rows {link.get('load', '')}", f"`ingest` {f.cell('load', load_title, '(b)', 'rows/s')} rows/s",
         f"text `COPY` of a CSV {ceiling('(i3)')}; ADBC `adbc_ingest` {ceiling('(i1)')}; psycopg `write_row` {ceiling('(i2)')} rows/s",
         (f"{f.check('load', '(b) ingest bars only / fastest independent ceiling', ' the fastest ceiling')}; "
         f"{f.check('load', '(b) ingest bars only / ADBC', ' ADBC')}"), ">= 0.7x"),
        (f"bulk load with a 7-indicator view {link.get('load', '')}", f"`ingest` {f.cell('load', load_title, '(c)', 'rows/s')} rows/s",
         "the same ceilings", f.check("load", "(c) ingest with view / fastest independent ceiling", " the fastest ceiling"), ">= 0.4x"),
        (f"identical reload {link.get('load', '')}", "the same `ingest` again", "the first bars-only `ingest`",
         f.check("load", "(d) idempotent reload", " its time"), "<= 1x"),
        (f"bulk load vs row-wise inserts {link.get('load', '')}", "`ingest`", "`executemany` / `to_sql`",
         f.check("load", "row-wise", " faster than the fastest"), ">= 8x"),
        (f"range read, 100 symbols {link.get('read', '')}", "`get_features`", "`pandas.read_sql`; bare ADBC `fetch_arrow_table`",
         (f"`read_sql` takes {f.check('read', 'read_sql time / ours', ' our time')}; "
         f"{f.check('read', 'bare ADBC', ' the bare ADBC rows/s')}"), ">= 5x; >= 0.8x"),
        (f"latest row, 1 symbol, uncached {link.get('read', '')}", "`get_latest`", "a prepared `LIMIT 1` on a held connection",
         f.check("read", "get_latest(1 symbol", " its time"), "<= 2x"),
        (f"latest row, {many} symbols {link.get('read', '')}", "one LATERAL query", "the bare LATERAL query",
         f.check("read", "bare LATERAL", " its time"), "<= 1.2x"),
        (f"point-in-time frame, {tf_n} events {link.get('read', '')}", "`get_training_frame`",
         "`pandas.merge_asof` on frames already in memory; `get_features` + `merge_asof`",
         f"{f.check('read', 'in-memory merge_asof', ' the time of the in-memory `merge_asof`')}; {_measured(f.checks('read', 'get_features + merge_asof')[0]) if f.checks('read', 'get_features + merge_asof') else 'n/a'} the read + `merge_asof`",
         "<= 3x"),
        (f"point-in-time frame, the same {fe_n} events {link.get('read', '')}",
         f"`get_training_frame` {f.cell('read', 'like with like', 'featurestore get_training_frame', 'value')} µs/event",
         f"Feast-style N x M SQL join {f.cell('read', 'like with like', 'Feast-style N x M', 'value')} µs/event",
         f"Feast-style takes {f.cell('read', 'like with like', 'ratio: Feast-style', 'value')}x our time", "report"),
        (f"knowledge time: current reads {link.get('knowledge_time', '')}", "reads after knowledge time",
         "the same reads before it (same data, same corrections)", _kt(f, "current read now / before"), "<= 1.05x"),
        (f"knowledge time: `as_known_at` reads {link.get('knowledge_time', '')}", "`as_known_at` reads, 1% of bars corrected",
         "current reads on the same data", _kt(f, "as_known_at / current read"), "<= 1.5x"),
        (f"knowledge time: corrections {link.get('knowledge_time', '')}", "a one-row correction with the seven-indicator view",
         "ArcticDB `update` (bars only)",
         (f"{f.check('knowledge_time', 'one-row correction, ours (with view) / ArcticDB', ' its time')}; "
          f"now / before knowledge time {f.check('knowledge_time', 'one-row correction now / before')}; "
          f"history {f.check('knowledge_time', 'history bytes per corrected bar')} per corrected bar"),
         "report"),
        (f"float32 feature views, {f.cell('float32_size', 'bytes per row', 'f32', 'rows')} rows {link.get('float32_size', '')}",
         f"`dtype=\"float32\"` (real): {f.cell('float32_size', 'bytes per row', 'f32', 'table + indexes')} B/row",
         f"the float64 view (float8): {f.cell('float32_size', 'bytes per row', 'f64', 'table + indexes')} B/row",
         (f"{f.check('float32_size', 'bytes per row / float64')} the bytes; max relative error "
          f"{f.check('float32_size', 'max relative error', ' of 2**-24')}"),
         "<= 1x"),
        *_scale_rows(f, link),
        *_segment_rows(f, link),
        *_serving_rows(f, link),
        (f"cached `get_latest`, 1 symbol {link.get('cache', '')}", f"hit p50 {f.cell('cache', 'cache hits', 'get_latest(1 symbol)', 2)} µs",
         f"uncached p50 {f.cell('cache', 'cache hits', 'get_latest(1 symbol)', 1)} µs", f.cell("cache", "cache hits", "get_latest(1 symbol)", 4), "< 20 µs"),
        (f"cache miss, `get_latest` 1 symbol {link.get('cache', '')}", "default cache, every call a new key", "`cache=None`",
         f.check("cache", "miss, default cache", " its time"), "<= 1.1x"),
        (f"`consistency=\"notify\"` {link.get('cache', '')}",
         f"cached entry dropped {f.cell('cache', 'notify', '', 0)} ms (p50), {f.cell('cache', 'notify', '', 2)} ms (max) after another store's write returns",
         "", "", "report"),
        (f"cache policies {link.get('cache', '')}", "hit ratio vs the best libCacheSim policy, worst case "
         + (min((_measured(c) for c in f.checks("cache", "libCacheSim")), key=lambda t: float(t.split()[0]), default="n/a")),
         "throughput vs `cachetools.LRUCache`",
         ", ".join((f"{str(c['what']).split()[0]} {_measured(c)}" if c["status"] == "PASS" else f"**{str(c['what']).split()[0]} {_measured(c)}**")
                   for c in f.checks("cache", "throughput")) + " (bold: missed)", ">= 0.5x"),
        (f"a pooled point read {link.get('pool', '')}", f"{f.cell('pool', 'latency', '(f)', 'p50 / (b)')} a held prepared connection",
         f"SQLAlchemy QueuePool defaults {f.cell('pool', 'latency', '(d)', 'p50 / (b)')}", "", "report"),
        (f"the demo, {demo_bars}, whole process {link.get('demo', '')}",
         f"{f.cell('demo', 'whole process', 'first run', 1)} s into a fresh home; {f.cell('demo', 'whole process', 'second run', 1)} s for the idempotent second run",
         "", "", "report"),
        (f"serialization, {ser_n} bars {link.get('serialization', '')}",
         (f"store: write {ser_cell('featurestore (ingest; get_bars -> Arrow)', 1)} s, read {ser_cell('featurestore (ingest; get_bars -> Arrow)', 2)} s, "
         f"{ser_cell('featurestore (ingest; get_bars -> Arrow)', 6)}x memory, indexed"),
         (f"Parquet zstd {ser_cell('Parquet (zstd)', 1)} s / {ser_cell('Parquet (zstd)', 2)} s, {ser_cell('Parquet (zstd)', 6)}x memory; "
         f"Pickle {ser_cell('Pickle', 1)} s / {ser_cell('Pickle', 2)} s"),
         "the store is the only option with indexed range, latest and point-in-time reads", "report"),
    ]
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def provenance_problems(results_dir: Path = HERE / "results") -> list[str]:
    """Results files that no script here wrote (see ``--check``)."""
    problems = []
    for md in sorted(results_dir.glob("*.md")):
        lines = md.read_text(encoding="utf-8").splitlines()
        written = lines[2] if len(lines) > 2 else ""
        # the command ends at its closing backtick when it has no arguments
        script = written.split("`python ", 1)[-1].split(" ", 1)[0].rstrip("`") if written.startswith("Written by `python ") else ""
        if not md.with_suffix(".json").is_file():
            problems.append(f"{md.name}: no {md.stem}.json beside it")
        else:
            wrote = json.loads(md.with_suffix(".json").read_text(encoding="utf-8")).get("markdown_sha256")
            if wrote != hashlib.sha256(md.read_bytes()).hexdigest():
                problems.append(f"{md.name}: differs from what {script or 'its script'} wrote (edited by hand?): rerun the script")
        if not script.startswith("benchmarks/") or not (HERE.parent / script).is_file():
            problems.append(f"{md.name}: does not start as benchmarks/_results.py writes it (no 'Written by `python benchmarks/<script>.py'")
    for js in sorted(results_dir.glob("*.json")):
        if not js.with_suffix(".md").is_file():
            problems.append(f"{js.name}: no {js.stem}.md beside it")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when the README is stale")
    ap.add_argument("--readme-rows", action="store_true",
                    help="print the top-level README's benchmark table from the results files (to paste there)")
    args = ap.parse_args(argv)
    if args.readme_rows:
        print(readme_rows())
        return 0
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
        top = (HERE.parent / "README.md").read_text(encoding="utf-8")
        if readme_rows() not in top:
            problems.append("README.md's benchmark table differs from the results files: paste the output of "
                            "python benchmarks/_summary.py --readme-rows")
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    readme.write_text(new, encoding="utf-8")
    print(f"wrote the summary into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
