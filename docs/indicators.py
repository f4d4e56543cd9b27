"""Print (or, with --write, refresh) README.md's table of every built-in indicator and transform.

The table is generated from the registry, so it can never list a kind that does not exist or miss
one that does; tests/test_docs.py fails when README.md's copy is stale. Development tooling: it
lives beside the docs, not in the featurestore package.

    python docs/indicators.py            # print the table
    python docs/indicators.py --write    # replace the table in README.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from featurestore.indicators import REGISTRY, IndicatorSpec
from featurestore.indicators.registry import format_number

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- indicators:start -->", "<!-- indicators:end -->"


def _param(p: object) -> str:
    name, default, lo, hi = p.name, p.default, p.lo, p.hi  # type: ignore[attr-defined]
    tag = getattr(p, "tag", "")
    shown = f"{name} (written `_{tag}<k>` when set)" if tag else name
    allowed = f"{format_number(lo)}..{format_number(hi)}"
    return f"{shown} {allowed} (default {format_number(default)})"


def table() -> str:
    """The Markdown table: one row per registered built-in kind, sorted by kind."""
    rows = [
        "| spec (defaults) | outputs | inputs | parameters | definition | checked against |",
        "|---|---|---|---|---|---|",
    ]
    for kind, d in sorted(REGISTRY.items()):
        spec = IndicatorSpec(kind)
        outputs = ", ".join(f"`{c}`" for c in spec.outputs)
        params = "; ".join(_param(p) for p in d.params) or "none"
        ref = f"TA-Lib `{d.talib_name}`, bit for bit" if d.talib_name else "an independent numpy/pandas oracle in tests"
        rows.append(
            f"| `{spec.name}` | {outputs} | {', '.join(d.inputs)} | {params} | {d.title.replace('|', '/')} | {ref} |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    text = table()
    if "--write" not in argv:
        print(text)
        return 0
    readme = README.read_text(encoding="utf-8")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")
    print(f"wrote {len(text.splitlines()) - 2} rows into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
