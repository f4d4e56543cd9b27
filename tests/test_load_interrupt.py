"""Ctrl-C during ``featurestore load`` leaves the store unchanged and exits 130 (issue 14).

The CLI runs in a subprocess with its stderr on a pseudo-terminal, so it draws its progress bar;
SIGINT is sent once the bar shows the load under way (rows written, or feature groups computed).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import make_bars
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.config import libpq_url

CLI = [sys.executable, "-c", "from featurestore.cli import main; main()"]


def _counts(url: URL) -> dict[str, int]:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ("bars", "entities", "loads", "fv_intr_v1", "indicator_state", "indicator_checkpoints")
        }


def _run_and_interrupt(args: list[str], ready: re.Pattern[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with stderr on a pty; send SIGINT when ``ready`` matches its stderr."""
    master, slave = pty.openpty()
    # a real terminal has a size; tqdm draws nothing on one 0 columns wide
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    proc = subprocess.Popen([*CLI, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    out = b""
    sent = False
    try:
        while True:
            readable, _, _ = select.select([master], [], [], 600)
            if not readable:
                raise AssertionError(f"no output for 600 s: {out.decode(errors='replace')[-2000:]}")
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal (it exited)
                break
            if not data:
                break
            out += data
            if not sent and ready.search(out.decode(errors="replace")):
                proc.send_signal(signal.SIGINT)
                sent = True
        rc = proc.wait(timeout=600)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert sent, f"the load ended before it showed progress: {out.decode(errors='replace')[-3000:]}"
    return rc, out.decode(errors="replace")


@pytest.fixture()
def prepared(make_database: Callable[[str], URL], tmp_path: Path) -> tuple[URL, Path]:
    url = make_database("interrupt")
    with FeatureStore(url, auto_migrate=True) as fs:
        fs.create_view("intr", ["sma_5", "ema_10", "rsi_14"])
        fs.ingest(make_bars(["OLD1", "OLD2"], 100))  # the store is not empty: it must stay as it is
    data = tmp_path / "data"
    data.mkdir()
    for f in range(20):  # 20 files x 10 symbols x 2,000 bars = 400,000 rows
        make_bars([f"F{f:02d}S{s}" for s in range(10)], 2000, seed=f).to_parquet(data / f"part{f:02d}.parquet")
    return url, data


def _env(**extra: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURESTORE_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def test_ctrl_c_while_writing_bars_leaves_the_store_unchanged(prepared: tuple[URL, Path]) -> None:
    url, data = prepared
    before = _counts(url)
    rc, err = _run_and_interrupt(
        ["--url", url.render_as_string(hide_password=False), "load", str(data), "--chunk-rows", "5000"],
        re.compile(r"load:\s+([1-9]\d?)%\|"),  # a percentage: the bar has a total; rows are going in
        _env(),
    )
    assert rc == 130, err[-3000:]
    assert "load interrupted: nothing was written" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert _counts(url) == before


def test_ctrl_c_while_computing_features_leaves_the_store_unchanged(prepared: tuple[URL, Path]) -> None:
    url, data = prepared
    before = _counts(url)
    # a small memory bound: features are read back in many groups of symbols, each advancing the bar
    rc, err = _run_and_interrupt(
        ["--url", url.render_as_string(hide_password=False), "load", str(data)],
        re.compile(r"load: features:\s+([1-9]\d?)%\|"),
        _env(FEATURESTORE_LOAD_MEMORY_ROWS="20000"),
    )
    assert rc == 130, err[-3000:]
    assert "load interrupted: nothing was written" in err and "Traceback" not in err, err[-3000:]
    assert _counts(url) == before

