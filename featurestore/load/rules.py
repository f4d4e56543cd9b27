"""The contract's constants, message helpers and errors that carry a structured fix.

An error raised here names the source, the row and the column. Where there is a fix (rename a
column, give a symbol, a delimiter, an encoding or a time zone), the error carries it as
:class:`Fix` objects, so the Python message shows Python (``column_map={'Date': 'ts'}``) and the
CLI renders the same fix as its own options (``--map Date=ts``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from featurestore.errors import ValidationError

REQUIRED = ("symbol", "ts", "open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close")
FLOAT_COLUMNS = ("open", "high", "low", "close", "volume")

# Binary COPY built with numpy streams fastest in chunks of this order (benchmarks/load.py); the
# size also keeps a chunk's columns near 20 MB, so a load's memory is bounded by it.
DEFAULT_CHUNK_ROWS = 250_000

MAX_PRICE = 1e12
SYMBOL_MAX_LEN = 64
SYMBOL_PATTERN = r"^[A-Za-z0-9._\-/:=^+@]+$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_SYMBOL_ALNUM = r"[A-Za-z0-9]"
_SYMBOL_RULE = (
    f"a symbol must be 1-{SYMBOL_MAX_LEN} characters of letters, digits and . _ - / : = ^ + @, "
    "with at least one letter or digit"
)

TS_MIN_US = -2_208_988_800_000_000  # 1900-01-01T00:00:00Z
TS_MAX_US = 7_258_118_400_000_000  # 2200-01-01T00:00:00Z (exclusive)
_DAY_US = 86_400_000_000
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}  # ns is divided, see _epoch_to_us

NAIVE_HINT = "to treat naive times as that zone"

# An ISO 8601 time of day followed by a UTC offset; a bare date such as 2024-01-31 must not match.
_OFFSET_RE = r"[Tt ]\d{1,2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"


def _show(value: object, limit: int = 50) -> str:
    """repr() of a bad value, truncated so a 10,000-character string stays readable."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_names(names: Sequence[object], limit: int = 20) -> str:
    """Column names for a message: each truncated, at most ``limit`` of them (a header may be hostile)."""
    shown = ", ".join(_show(n, 80) for n in names[:limit])
    return shown + (f", ... ({len(names)} columns in all)" if len(names) > limit else "")


def _column_label(name: object) -> str:
    """A column name for ValidationError.column, truncated when absurdly long (it is echoed)."""
    text = str(name)
    return text if len(text) <= 100 else text[:97] + "..."


def validate_symbol(symbol: object) -> str:
    """Return ``symbol`` if it is a valid symbol, else raise ValidationError (column 'symbol')."""
    if not isinstance(symbol, str):
        raise ValidationError(
            f"symbol must be a string, got {type(symbol).__name__} {_show(symbol)}", column="symbol"
        )
    if not (
        1 <= len(symbol) <= SYMBOL_MAX_LEN
        and _SYMBOL_RE.fullmatch(symbol)
        and re.search(_SYMBOL_ALNUM, symbol)
    ):
        raise ValidationError(f"invalid symbol {_show(symbol)}: {_SYMBOL_RULE}", column="symbol")
    return symbol




# --------------------------------------------------------------------------------------------
# Row numbers: one rule for every source
# --------------------------------------------------------------------------------------------


def row_label(row: int, *, in_file: bool) -> str:
    """How an error names a row: ``data row N`` in a file, ``row N (0-based position)`` in a frame.

    The rule: a row is named the way you would look it up in its source. In a file, data rows
    count from 1 and the header is not counted (in a CSV without blank lines, data row N is on
    line N + 1). In a DataFrame, Arrow Table or RecordBatch, the row is the 0-based position
    you pass to ``.iloc[N]`` or ``.slice(N)``. :attr:`ValidationError.row` holds the same number.
    """
    return f"data row {row}" if in_file else f"row {row} (0-based position)"


# --------------------------------------------------------------------------------------------
# Errors with a structured fix
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fix:
    """One suggested change to a load's arguments, rendered for Python or for the CLI.

    ``option`` is one of ``column_map`` (``value`` is ``(source, target)``, target None drops
    the column; ``value`` None is a generic example), ``symbol``, ``delimiter``, ``encoding``, ``assume_tz``, ``extra_columns``.
    """

    option: str
    value: object

    def python(self) -> str:
        """The fix as a keyword argument, e.g. ``column_map={'Date': 'ts'}``."""
        if self.option == "column_map":
            return f"column_map={{{_map_item(self.value)}}}"
        if self.option == "symbol":
            return "symbol='SYMBOL'"
        if self.option == "extra_columns":
            return f"extra_columns=[{_show(self.value, 80)}]"
        return f"{self.option}={self.value!r}"

    def cli(self) -> str | None:
        """The fix as ``featurestore load`` options, or None when the CLI has no such option."""
        if self.option == "column_map":
            if self.value is None:
                return "--map SRC=DST"
            src, dst = cast("tuple[object, str | None]", self.value)
            return "--map " + shlex.quote(f"{src}={dst or ''}")
        if self.option == "symbol":
            return "--symbol SYMBOL"
        if self.option in ("delimiter", "encoding", "assume_tz"):
            return f"--{self.option.replace('_', '-')} {shlex.quote(str(self.value))}"
        return None


def _map_item(value: object) -> str:
    """``'Date': 'ts'`` for a (source, target) pair; a generic example for None."""
    if value is None:
        return "'Source': 'target'"
    src, dst = cast("tuple[object, str | None]", value)
    return f"{_show(src, 80)}: {dst!r}"


def _join_python(fixes: Sequence[Fix]) -> str:
    maps = [f for f in fixes if f.option == "column_map"]
    parts = []
    if maps:
        inner = ", ".join(_map_item(f.value) for f in maps)
        parts.append(f"column_map={{{inner}}}")
    parts.extend(f.python() for f in fixes if f.option != "column_map")
    return ", ".join(parts)


def _join_cli(fixes: Sequence[Fix]) -> str:
    return " ".join(c for c in (f.cli() for f in fixes) if c)


@dataclass(frozen=True, slots=True)
class Hint:
    """``<lead> <fixes><tail>``, e.g. ``rename with`` + ``column_map={'Date': 'ts'}``."""

    lead: str
    fixes: tuple[Fix, ...]
    tail: str = ""
    cli_tail: str | None = None  # replaces ``tail`` in the CLI rendering when set

    def render(self, cli: bool) -> str:
        fix = _join_cli(self.fixes) if cli else _join_python(self.fixes)
        if not fix:
            return ""
        tail = self.cli_tail if cli and self.cli_tail is not None else self.tail
        return f"{self.lead} {fix}{tail}"


def _where(source: str | None, row: int | None, column: str | None, in_file: bool) -> str:
    parts = [
        source,
        row_label(row, in_file=in_file) if row is not None else None,
        f"column {column!r}" if column is not None else None,
    ]
    return ", ".join(p for p in parts if p is not None)


class LoadInputError(ValidationError):
    """A :class:`ValidationError` whose fix is structured (:attr:`hints`), so each front end
    shows it in its own syntax: ``str(exc)`` shows Python, :meth:`render_cli` the CLI options.

    The message reads ``<where>: <problem>; <hint>; <hint>``. ``row`` is named by :func:`row_label`.
    """

    def __init__(
        self,
        problem: str,
        *,
        hints: Sequence[Hint] = (),
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
        in_file: bool = False,
    ) -> None:
        self.problem = problem
        self.hints = tuple(hints)
        super().__init__(problem, source=source, row=row, column=column)
        self.where = _where(source, row, column, in_file)
        self.args = (self._render(cli=False),)

    def _render(self, cli: bool) -> str:
        text = "; ".join([self.problem, *(t for t in (h.render(cli) for h in self.hints) if t)])
        return f"{self.where}: {text}" if self.where else text

    @property
    def fixes(self) -> tuple[Fix, ...]:
        """Every suggested fix, in order."""
        return tuple(f for h in self.hints for f in h.fixes)

    def render_cli(self) -> str:
        """The same message with each fix written as ``featurestore load`` options."""
        return self._render(cli=True)

    def __str__(self) -> str:
        return str(self.args[0])


def row_error(
    message: str,
    *,
    source: str | None,
    row: int,
    column: str | None,
    in_file: bool,
    hints: Sequence[Hint] = (),
) -> LoadInputError:
    """The error for one row, the row named by :func:`row_label` (the one row-number rule)."""
    return LoadInputError(message, hints=hints, source=source, row=row, column=column, in_file=in_file)
