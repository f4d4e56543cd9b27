"""Column resolution: rename with ``column_map``, then check duplicated, missing and unexpected names.

Errors here carry their fix structured (:class:`~featurestore.load.rules.Hint`): a guessed rename
for a missing column (``Date`` -> ``ts``, ``Close`` -> ``close``), a drop for an unexpected one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeAlias

import pandas as pd
import pyarrow as pa

from featurestore.errors import ConfigError, ValidationError
from featurestore.load.rules import (
    REQUIRED,
    Fix,
    Hint,
    LoadInputError,
    _column_label,
    _show,
    _show_names,
    validate_symbol,
)

__all__ = ["Column"]

Column: TypeAlias = pa.Array | pa.ChunkedArray | pd.Series


def _check_arguments(
    extra_columns: Collection[str], symbol: str | None, assume_tz: str | None
) -> tuple[str, ...]:
    extras = tuple(extra_columns)
    if isinstance(extra_columns, str):
        raise ConfigError(f"extra_columns must be a collection of names, not the string {extras!r}")
    clash = [name for name in extras if name in REQUIRED]
    if clash:
        raise ConfigError(f"extra_columns may not repeat a required column: {clash}")
    if len(set(extras)) != len(extras):
        raise ConfigError(f"extra_columns has duplicates: {list(extras)}")
    if symbol is not None:
        validate_symbol(symbol)
    if assume_tz is not None:
        try:
            pd.Timestamp("2000-01-01").tz_localize(assume_tz)
        except Exception as exc:
            raise ConfigError(
                f"assume_tz={assume_tz!r} is not a known time zone (try 'UTC' or 'America/New_York')"
            ) from exc
    return extras


def _resolve_columns(
    names: Sequence[object],
    *,
    source: str,
    extras: tuple[str, ...],
    column_map: Mapping[str, str | None] | None,
    symbol: str | None,
    index_targets: Callable[[set[str]], dict[str, Column]] | None = None,
) -> tuple[dict[str, int], dict[str, Column]]:
    """Map target name -> source column position; check duplicates, missing and unexpected.

    ``index_targets`` (pandas only) supplies ts / symbol from the index when no column is named so.
    """
    mapping = dict(column_map or {})
    seen: dict[object, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    dups = [name for name, count in seen.items() if count > 1]
    if dups:
        raise ValidationError(f"duplicated column name(s): {_show_names(dups)}", source=source)
    if len(names) == 1 and isinstance(names[0], str):
        for sep in (";", "\t", "|"):
            if sep in names[0]:
                raise LoadInputError(
                    f"found a single column named {_show(names[0], 80)}; is the delimiter {sep!r}?",
                    hints=[Hint("pass", (Fix("delimiter", sep),))],
                    source=source,
                )
    targets: dict[str, int] = {}
    unexpected: list[object] = []
    for pos, name in enumerate(names):
        target = mapping.get(name, name)  # type: ignore[call-overload]
        if target is None:
            continue
        if target in targets:
            other = names[targets[target]]  # type: ignore[index]
            raise ValidationError(
                f"columns {_show(other)} and {_show(name)} both map to {target!r}", source=source
            )
        if target in REQUIRED or target in extras:
            targets[target] = pos  # type: ignore[index]
        else:
            unexpected.append(name)
    if symbol is not None and "symbol" in targets:
        src = names[targets["symbol"]]
        raise LoadInputError(
            f"symbol={symbol!r} was given but the data also has a symbol column {_show(src)}",
            hints=[Hint("drop the column with", (Fix("column_map", (src, None)),))],
            source=source,
            column=_column_label(src),
        )
    from_index: dict[str, Column] = index_targets(set(targets)) if index_targets else {}
    # extra columns are optional: a load may carry some, all or none of the declared ones
    wanted = [t for t in REQUIRED if not (t == "symbol" and symbol is not None)]
    missing = [t for t in wanted if t not in targets and t not in from_index]
    if missing:
        present = _show_names(names) or "none"
        renames = _guess_renames(missing, [n for n in names if n not in mapping])
        generic = not renames
        hints = [
            Hint(
                "rename with",
                tuple(Fix("column_map", pair) for pair in renames) or (Fix("column_map", None),),
            )
        ]
        if "symbol" in missing and not any(dst == "symbol" for _, dst in renames):
            hints.append(Hint("pass", (Fix("symbol", None),), " if the whole source is one symbol"))
        raise LoadInputError(
            f"missing required column(s) {', '.join(map(repr, missing))}; columns present: {present}"
            + ("" if generic else " (names are case-sensitive)"),
            hints=hints,
            source=source,
        )
    if unexpected:
        name = unexpected[0]
        raise LoadInputError(
            f"unexpected column {_show(name)}",
            hints=[
                Hint(
                    "drop it with",
                    (Fix("column_map", (name, None)),),
                    ", or declare it in extra_columns (through a store: a view's user column)",
                    cli_tail=", or make it a view's user column (featurestore views create NAME ... --column NAME)",
                )
            ],
            source=source,
            column=_column_label(name),
        )
    return targets, from_index


# Source names that usually mean ``ts``; others are matched to the required names ignoring case.
_TS_NAMES = ("date", "datetime", "time", "timestamp", "date_time", "dt")


def _guess_renames(missing: Sequence[str], names: Sequence[object]) -> list[tuple[str, str]]:
    """(source, target) renames that would supply ``missing`` columns: case-insensitive matches."""
    by_lower: dict[str, str] = {}
    for name in names:
        if isinstance(name, str):
            by_lower.setdefault(name.strip().lower(), name)
    out: list[tuple[str, str]] = []
    for target in missing:
        candidates = (target, *_TS_NAMES) if target == "ts" else (target,)
        for cand in candidates:
            src = by_lower.get(cand)
            if src is not None and src != target:
                out.append((src, target))
                break
    return out
