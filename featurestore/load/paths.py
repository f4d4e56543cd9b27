"""Which files a load reads: paths, directories and globs -> an ordered list of files and formats."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from featurestore.errors import ValidationError

__all__ = ["FORMATS", "expand_paths"]

FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".csv.bz2": "csv",
    ".csv.zst": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".feather": "ipc",
    ".arrow": "ipc",
    ".ipc": "ipc",
}
_FORMAT_NAMES = {"csv": "csv", "parquet": "parquet", "feather": "ipc", "arrow": "ipc", "ipc": "ipc"}


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    return None


def expand_paths(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files, directories (every supported file inside, recursively, sorted) and glob patterns.

    The result keeps the order of the arguments and has no duplicates; nothing matching is an error.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for item in items:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _format_of(p))
            if not found:
                raise ValidationError(
                    f"directory has no supported files ({', '.join(FORMATS)})", source=text
                )
            out.extend(found)
        elif path.is_file():
            out.append(path)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise ValidationError("no file matches this pattern", source=text)
            out.extend(found)
        else:
            raise ValidationError("no such file or directory", source=text)
    if not out:
        raise ValidationError("no input files given")
    return list(dict.fromkeys(out))
