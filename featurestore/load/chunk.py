"""BarChunk: one validated chunk of bars as numpy columns, the unit every write consumes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from featurestore.load.rules import row_label


@dataclass(frozen=True, slots=True)
class BarChunk:
    """One validated chunk of bars as numpy columns, in source order unless :meth:`sorted`."""

    symbol: np.ndarray  # object array of str
    ts: np.ndarray  # int64 microseconds since the Unix epoch, UTC
    open: np.ndarray  # float64, C-contiguous (as are the other price/volume columns)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # float64, NaN allowed
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # source row numbers
    source: str = "DataFrame"
    in_file: bool = False  # rows are 1-based data rows of a file, not 0-based frame positions

    def __len__(self) -> int:
        return len(self.ts)

    def row_label(self, row: int) -> str:
        """How errors name source row ``row`` of this chunk (see :func:`row_label`)."""
        return row_label(row, in_file=self.in_file)

    def take(self, index: np.ndarray) -> BarChunk:
        """A new chunk with the rows at ``index`` (integer positions), in that order."""
        return BarChunk(
            symbol=self.symbol[index],
            ts=self.ts[index],
            open=self.open[index],
            high=self.high[index],
            low=self.low[index],
            close=self.close[index],
            volume=self.volume[index],
            extra={name: col[index] for name, col in self.extra.items()},
            rows=self.rows[index],
            source=self.source,
            in_file=self.in_file,
        )

    def symbol_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes, uniques): int64 code of each row's symbol into the sorted unique symbols."""
        codes, uniques = pd.factorize(self.symbol, sort=True)
        return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)

    def sorted(self) -> BarChunk:
        """A new chunk stably sorted by (symbol, ts), the primary-key order of the tables."""
        codes, _ = self.symbol_codes()
        return self.take(np.lexsort((self.ts, codes)))

    @staticmethod
    def concat(chunks: Sequence[BarChunk]) -> BarChunk:
        """Concatenate chunks with the same extra columns (the source of the first is kept)."""
        if not chunks:
            raise ValueError("concat() needs at least one chunk")
        first = chunks[0]

        def cat(get: Callable[[BarChunk], np.ndarray]) -> np.ndarray:
            return np.concatenate([get(c) for c in chunks])

        return BarChunk(
            symbol=cat(lambda c: c.symbol),
            ts=cat(lambda c: c.ts),
            open=cat(lambda c: c.open),
            high=cat(lambda c: c.high),
            low=cat(lambda c: c.low),
            close=cat(lambda c: c.close),
            volume=cat(lambda c: c.volume),
            extra={k: cat(lambda c, k=k: c.extra[k]) for k in first.extra},  # type: ignore[misc]
            rows=cat(lambda c: c.rows),
            source=first.source,
            in_file=first.in_file,
        )

