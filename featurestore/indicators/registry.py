"""Indicator specs: names, parameters, output columns, lookbacks and reference implementations.

One registry (``REGISTRY``; ``KINDS`` adds user-defined kinds) maps each indicator kind to its
definition: the inputs it needs, its
parameters (defaults and TA-Lib's accepted ranges), its outputs, the numba kernel that computes
it and the references that tests and benchmarks compare it with (the TA-Lib function, and a
pandas formulation where one exists). ``IndicatorSpec`` is one configured indicator: hashable,
with a canonical string (``str(spec)``, e.g. ``macd_12_26_9``) and a JSON-able ``to_dict()`` form,
which is how feature views store it.

Naming rule, for spec strings and output columns alike::

    <kind>[_<output>][_<param>...]

- ``<output>`` is omitted for an indicator's main output (``sma_20``, ``macd_12_26_9``) and
  names the others (``macd_signal_12_26_9``, ``bbands_upper_20_2``).
- Parameters follow in the registry's order (``macd``: fast, slow, signal; ``bbands``: period,
  nbdevup, nbdevdn). ``bbands`` writes one multiplier when ``nbdevup == nbdevdn``
  (``bbands_20_2``) and both otherwise (``bbands_20_2_1p5``). ``matype`` (always 0) is not written.
- Numbers are written as the shortest decimal that round-trips, with no exponent, a trailing
  ``.0`` dropped and the decimal point written as ``p`` (2.0 -> ``2``, 1.5 -> ``1p5``), so every
  name is a plain lower-case SQL identifier. ``parse_indicator`` also accepts ``1.5``.
- Tagged parameters (``ParamDef.tag``) follow, only when not at their default, as
  ``<tag><value>``: TA-Lib's unstable period is ``u`` (``ema_30_u50`` = EMA(30) with
  ``talib.set_unstable_period("EMA", 50)``).
- A kind may contain ``_`` (``plus_di``); parsing takes the longest registered kind.
- MACD is stored with ``fast <= slow``: TA-Lib swaps them when ``slow < fast`` and the outputs
  are identical, so ``macd(26, 12, 9)`` *is* ``macd_12_26_9``.

Definitions live in ``defs/<family>.py`` (see ``defs`` for how to add one); this module
assembles them. Nothing here imports numba, talib or pandas; references import them when called.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from featurestore.errors import IndicatorError
from featurestore.indicators.base import (
    Arrays,
    IndicatorDef,
    Number,
    ParamDef,
    UserKernelError,
    format_number,
    name_number,
)
from featurestore.indicators.defs import ALL_DEFS

__all__ = [
    "BUILTIN_KINDS",
    "KINDS",
    "REGISTRY",
    "Arrays",
    "IndicatorDef",
    "IndicatorSpec",
    "ParamDef",
    "format_number",
    "indicator",
    "parse_indicator",
    "parse_output_name",
]

#: Every built-in kind, assembled from ``defs``' families (a duplicate kind fails there).
REGISTRY: dict[str, IndicatorDef] = {d.kind: d for d in ALL_DEFS}
#: The built-in kinds (a user kind may not shadow or extend one of them).
BUILTIN_KINDS: frozenset[str] = frozenset(REGISTRY)
#: Every kind that specs can name: the built-ins plus the user-defined kinds registered in
#: this process (``featurestore.indicators.register``); parsing and specs look kinds up here.
KINDS: dict[str, IndicatorDef] = dict(REGISTRY)


def install_user_def(defn: IndicatorDef) -> None:
    """Add or replace a user-defined kind (``user.register`` validates it first)."""
    if defn.kind in BUILTIN_KINDS or not defn.code_hash:
        raise UserKernelError(f"{defn.kind!r} is a built-in indicator kind; a user kind may not replace it")
    KINDS[defn.kind] = defn


@dataclass(frozen=True)
class IndicatorSpec:
    """One configured indicator, e.g. ``IndicatorSpec("macd", {"fast": 5, "slow": 35, "signal": 5})``.

    ``params`` may be given as a mapping (missing ones take their defaults); it is stored as a
    tuple of ``(name, value)`` pairs in the registry's order, so specs are hashable and two
    specs with the same effective parameters compare equal. Use ``indicator(kind, **params)`` or
    ``parse_indicator("macd_12_26_9")`` for the short forms.
    """

    kind: str
    params: tuple[tuple[str, Number], ...] = field(default=())

    def __post_init__(self) -> None:
        kind = str(self.kind).lower()
        if kind not in KINDS:
            raise IndicatorError(
                f"unknown indicator {self.kind!r}; known: {', '.join(sorted(KINDS))}"
            )
        raw = dict(self.params.items() if isinstance(self.params, Mapping) else self.params)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "params", _normalize_params(KINDS[kind], raw))
        # Hashed once: specs key the api's per-spec call plans, looked up on every call.
        object.__setattr__(self, "_hash", hash((self.kind, self.params)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[no-any-return,attr-defined]

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild (and so re-hash) on unpickling: string hashes differ between processes.
        return (type(self), (self.kind, self.params))

    # -- views ------------------------------------------------------------------------------
    @property
    def definition(self) -> IndicatorDef:
        return KINDS[self.kind]

    @property
    def p(self) -> dict[str, Number]:
        """The parameters as a new dict."""
        return dict(self.params)

    @cached_property
    def name(self) -> str:
        """Canonical string, e.g. ``sma_20``, ``macd_12_26_9``, ``bbands_20_2_1p5``, ``trange``."""
        return self._column("")

    def __str__(self) -> str:
        return self.name

    @property
    def inputs(self) -> tuple[str, ...]:
        """Input columns needed, in kernel order: ``("close",)`` or ``("high", "low", "close")``."""
        return self.definition.inputs

    @property
    def output_keys(self) -> tuple[str, ...]:
        """Output keys in kernel order ("" is the main output): e.g. ``("", "signal", "hist")``."""
        return self.definition.outputs

    @cached_property
    def outputs(self) -> tuple[str, ...]:
        """Output column names in kernel order, e.g. ``("macd_12_26_9", "macd_signal_12_26_9", ...)``."""
        return tuple(self._column(o) for o in self.definition.outputs)

    @cached_property
    def lookback(self) -> int:
        """Leading NaN bars on NaN-free input (TA-Lib's lookback): the first valid bar's index."""
        return self.definition.lookback(self.p)

    @cached_property
    def state_len(self) -> int:
        """Length of one symbol's state row (float64 values)."""
        return self.definition.state_len(self.p)

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, ``{"kind": "macd", "params": {"fast": 12, "slow": 26, "signal": 9}}``.

        A user-defined kind adds ``"code": <its code hash>`` (built-ins' form is unchanged), so
        a view records which code computed it.
        """
        defn = self.definition
        out: dict[str, Any] = {
            "kind": self.kind,
            "params": {
                k: v for k, v in self.params
                if not (defn.param(k).tag and v == defn.param(k).default)  # pre-tag hashes stay
            },
        }
        if defn.code_hash:
            out["code"] = defn.code_hash
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndicatorSpec:
        """Inverse of ``to_dict`` (validates again: a stored spec may predate a rule change)."""
        if not isinstance(data, Mapping) or "kind" not in data:
            raise IndicatorError(f"indicator spec dict needs a 'kind' key, got {data!r}")
        extra = set(data) - {"kind", "params", "code"}
        if extra:
            raise IndicatorError(f"indicator spec dict has unknown keys {sorted(extra)}")
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise IndicatorError(f"indicator spec 'params' must be an object, got {params!r}")
        kind = str(data["kind"]).lower()
        code = data.get("code")
        if code is not None or (kind in KINDS and KINDS[kind].code_hash):
            _check_code(kind, code)
        return cls(kind, dict(params))  # type: ignore[arg-type]

    def _column(self, output: str) -> str:
        parts = [self.kind]
        if output:
            parts.append(output)
        defn = self.definition
        if defn.name_tokens is not None:
            parts.extend(defn.name_tokens(self.p))
        else:
            parts.extend(name_number(v) for k, v in self.params if not defn.param(k).tag)
        for prm in defn.params:
            v = self.p[prm.name]
            if prm.tag and v != prm.default:
                parts.append(prm.tag + name_number(v))
        return "_".join(parts)


def _check_code(kind: str, code: Any) -> None:
    """A stored user-kind spec must name the code hash of the kernel registered now."""
    defn = KINDS.get(kind)
    if code is None:
        raise UserKernelError(f"stored spec of user kernel {kind!r} records no code hash")
    if defn is None:
        raise UserKernelError(
            f"user kernel {kind!r} (code hash {code}) is not registered in this process: import the "
            "module that registers it (featurestore.indicators.register) before writing or reading"
        )
    if not defn.code_hash:
        raise UserKernelError(f"{kind!r} is a built-in kind now, but the stored spec was a user kernel (code hash {code})")
    if defn.code_hash != code:
        raise UserKernelError(
            f"user kernel {kind!r} was registered with other code (code hash {defn.code_hash}) than the "
            f"code that computed these values (code hash {code})"
        )


def _normalize_params(defn: IndicatorDef, raw: dict[str, Any]) -> tuple[tuple[str, Number], ...]:
    """Resolve aliases, reject unknown names, fill defaults, check ranges, canonical order."""
    given: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).lower()
        fixed = dict(defn.fixed)
        if name in fixed and name not in {p.name for p in defn.params}:
            if isinstance(value, bool) or value != fixed[name]:
                raise IndicatorError(
                    f"{defn.kind}: only {name}={fixed[name]!r} is supported, got {value!r}"
                )
            continue
        for p in defn.params:
            if name == p.name or name in p.aliases:
                if p.name in given:
                    raise IndicatorError(f"{defn.kind}: parameter {p.name!r} given twice")
                given[p.name] = value
                break
        else:
            known = ", ".join(p.name for p in defn.params) or "none"
            raise IndicatorError(
                f"{defn.kind}: unknown parameter {key!r} (parameters: {known})"
            )
    out = {p.name: p.check(defn.kind, given.get(p.name, p.default)) for p in defn.params}
    if defn.canonical is not None:
        out = defn.canonical(out)
    return tuple((p.name, out[p.name]) for p in defn.params)


def indicator(kind: str, **params: Number) -> IndicatorSpec:
    """``indicator("macd", fast=12, slow=26, signal=9)``: a spec from keyword parameters."""
    return IndicatorSpec(kind, params)  # type: ignore[arg-type]


_NUM = re.compile(r"[0-9]+(?:[.p][0-9]+)?")


def _short(value: object, limit: int = 60) -> str:
    """repr() cut to ``limit`` characters: errors must not echo a hostile 10,000-character input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _split_kind(text: str) -> tuple[str, list[str]] | None:
    """(kind, remaining tokens) for the longest registered kind that ``text`` starts with."""
    tokens = text.split("_")
    for n in range(len(tokens), 0, -1):
        kind = "_".join(tokens[:n])
        if kind in KINDS:
            return kind, tokens[n:]
    return None


def parse_indicator(text: str | IndicatorSpec) -> IndicatorSpec:
    """Parse a short spec string: ``sma_20``, ``macd_12_26_9``, ``bbands_20_2``, ``bbands_20_2_1.5``,
    ``ema_30_u50``.

    Untagged parameters are positional in the registry's order; missing trailing ones take
    their defaults (``rsi`` is RSI(14)); tagged ones (``u50``) may follow in any order;
    ``bbands_<n>_<k>`` sets both multipliers to k.
    """
    if isinstance(text, IndicatorSpec):
        return text
    if not isinstance(text, str):
        raise IndicatorError(f"indicator spec must be a string, got {_short(text)}")
    split = _split_kind(text.strip().lower())
    if split is None:
        raise IndicatorError(
            f"unknown indicator {_short(text)}; known: {', '.join(sorted(KINDS))}"
        )
    kind, values = split
    defn = KINDS[kind]
    positional = [p for p in defn.params if not p.tag]
    tagged = {p.tag: p for p in defn.params if p.tag}
    params: dict[str, Number] = {}
    n_pos = 0
    for tok in values:
        prm = next((p for t, p in tagged.items() if tok.startswith(t) and _NUM.fullmatch(tok[len(t):])), None)
        if prm is not None:
            tok = tok[len(prm.tag):]
            if prm.name in params:
                raise IndicatorError(f"{_short(text)}: {prm.name} given twice")
        elif n_pos < len(positional):
            prm = positional[n_pos]
            n_pos += 1
        else:
            raise IndicatorError(
                f"{_short(text)}: {kind} takes at most {len(positional)} parameters "
                f"({', '.join(p.name for p in positional) or 'none'})"
                + (f" plus tagged {', '.join(t + '<n>' for t in tagged)}" if tagged else "")
            )
        if not _NUM.fullmatch(tok):
            raise IndicatorError(f"{_short(text)}: {prm.name} must be a non-negative number, got {_short(tok)}")
        num = tok.replace("p", ".")
        if prm.type is int and not num.isdigit():
            raise IndicatorError(f"{_short(text)}: {prm.name} must be an integer, got {_short(tok)}")
        params[prm.name] = int(num) if prm.type is int else float(num)
    if defn.complete is not None:
        params = defn.complete(params, n_pos)
    return IndicatorSpec(kind, params)  # type: ignore[arg-type]


def parse_output_name(column: str) -> tuple[IndicatorSpec, str]:
    """Map an output column name back to ``(spec, output key)``: ``macd_signal_12_26_9`` ->
    ``(macd_12_26_9, "signal")``."""
    split = _split_kind(column.strip().lower())
    if split is not None and split[1]:
        kind, rest = split
        outs = KINDS[kind].outputs
        if rest[0] in outs and rest[0] != "":
            spec = parse_indicator("_".join([kind, *rest[1:]]))
            if spec._column(rest[0]) == column:
                return spec, rest[0]
            raise IndicatorError(f"{column!r} is not canonical; did you mean {spec._column(rest[0])!r}?")
    spec = parse_indicator(column)
    if "" not in spec.output_keys:
        raise IndicatorError(
            f"{column!r} names no output; {spec.kind} outputs are {', '.join(spec.outputs)}"
        )
    if spec.name != column:
        raise IndicatorError(f"{column!r} is not canonical; did you mean {spec.name!r}?")
    return spec, ""
