"""A peer library in a process (and virtual environment) of its own, driven by JSON lines.

The benchmarks run ArcticDB and Feast in their own venvs, and older featurestore commits in
their own checkouts, side by side with this one. The driver holds a :class:`Worker`; the worker
process calls :func:`answers` first and :func:`serve` with its handler. One JSON command per
line on the worker's stdin, one JSON answer per line on its stdout: ``{"ok": ...}`` or
``{"error": ...}``; the first line is ``{"ready": <what runs there>}``. Standard library only
(it runs in the peers' environments).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

__all__ = ["Worker", "answers", "serve"]


class Worker:
    """The driver's end: ``worker(op, **kw)`` sends a command and returns its answer."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, quit_timeout: float = 120) -> None:
        self.name = name
        self.quit_timeout = quit_timeout
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=None if env is None else dict(env), bufsize=1)
        self.info = self._answer()["ready"]

    def _answer(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"worker {self.name} exited (code {self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def __call__(self, op: str, **kw: Any) -> Any:
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")  # type: ignore[union-attr]
        ans = self._answer()
        if "error" in ans:
            raise RuntimeError(f"worker {self.name}, {op}: {ans['error']}")
        return ans["ok"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
                self.proc.wait(self.quit_timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def answers() -> TextIO:
    """The worker's answer channel (its real stdout); from now on anything a library prints goes
    to stderr, never into the answers."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def serve(channel: TextIO, ready: str, handle: Callable[[str, dict[str, Any]], Any]) -> None:
    """Announce ``ready``, then answer each command with ``handle(op, arguments)`` until ``quit``;
    an exception is printed to stderr and answered as an error (the driver raises it)."""
    channel.write(json.dumps({"ready": ready}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "quit":
            break
        try:
            channel.write(json.dumps({"ok": handle(op, cmd)}, default=str) + "\n")
        except Exception as exc:
            traceback.print_exc()
            channel.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
