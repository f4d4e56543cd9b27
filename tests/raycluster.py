"""A real multi-node Ray cluster on this machine, for tests: a head node (``ray start --head``) and
worker nodes (``ray start --address``), each its own raylet with its own worker processes.

    with RayCluster.start(nodes=2) as rc:
        rc.connect()            # ray.init(address=rc.address) in this process
        rc.kill_node(1)         # SIGKILL a worker node's raylet and workers (a machine lost)

    python -m tests.raycluster      # start one, print its address, wait for Ctrl-C

Every port is chosen free at start (another test session's cluster on the same machine keeps its
own), the session directory is a private temporary one, and :meth:`close` kills exactly the
processes this cluster started (``ray stop`` would kill every Ray on the machine). Ray binds to
the machine's own address, not 127.0.0.1: its multi-node mode resolves loopback to that address,
so the nodes are still all on this machine. A cluster left by a killed session is reaped by the
next :meth:`RayCluster.start` (its directory records its owner's pid).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

OWNER_FILE = "owner.pid"
PREFIX = "fsray-"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> str:
    cli = Path(sys.executable).parent / "ray"
    return str(cli) if cli.exists() else "ray"


def _node_args(cpus: int) -> list[str]:
    """Flags every node needs so that nothing uses a fixed default port."""
    return [
        "--block", "--disable-usage-stats", f"--num-cpus={cpus}", "--object-store-memory=100000000",
        f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}",
        "--min-worker-port=0", "--max-worker-port=0",
    ]


def _kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill ``pid`` and all its descendants (Ray's workers start sessions of their own, so a
    process group would miss them), and wait for them."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=15)


class RayCluster:
    """A head node and ``nodes - 1`` worker nodes, started by :meth:`start`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.address = ""
        self._connected = False

    @classmethod
    def start(cls, nodes: int = 2, *, cpus_per_node: int = 1, timeout: float = 120) -> RayCluster:
        _reap_orphans()
        root = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/tmp"))  # short: Ray's unix socket paths live here
        (root / OWNER_FILE).write_text(str(os.getpid()))
        cluster = cls(root)
        try:
            cluster._start(nodes, cpus_per_node, timeout)
        except BaseException:
            cluster.close()
            raise
        return cluster

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        # no usage reports; no token authentication (a test cluster on this machine; a token file a
        # local Ray left in ~/.ray must not make the nodes and this driver disagree)
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
        env.pop("RAY_ADDRESS", None)
        with open(self.root / log, "wb") as out:
            proc = subprocess.Popen(
                [_ray_cli(), "start", *args], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def _wait_for(self, what: str, done: Any, proc: subprocess.Popen[bytes], log: str, deadline: float) -> Any:
        while time.monotonic() < deadline:
            value = done()
            if value:
                return value
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited ({proc.returncode}) before {what}:\n{self.log(log)}")
            time.sleep(0.2)
        raise TimeoutError(f"no {what} in time:\n{self.log(log)}")

    def _start(self, nodes: int, cpus: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        port = _free_port()
        head = self._spawn(
            ["--head", f"--port={port}", "--include-dashboard=false", f"--dashboard-port={_free_port()}",
             f"--temp-dir={self.root}", *_node_args(cpus)],
            "head.log",
        )

        def node_ip() -> str | None:
            m = re.search(r"Local node IP: (\S+)", self.log("head.log"))
            return m.group(1) if m else None

        ip = self._wait_for("the head's address", node_ip, head, "head.log", deadline)
        self.address = f"{ip}:{port}"

        def listening() -> bool:
            try:
                socket.create_connection((ip, port), timeout=0.5).close()
                return True
            except OSError:
                return False

        self._wait_for("the head's GCS", listening, head, "head.log", deadline)
        for i in range(1, nodes):
            self._spawn([f"--address={self.address}", *_node_args(cpus)], f"node{i}.log")
        self.connect()
        import ray

        self._wait_for(
            f"{nodes} live nodes", lambda: len([n for n in ray.nodes() if n["Alive"]]) >= nodes,
            head, "head.log", deadline,
        )

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""

    def connect(self) -> None:
        """``ray.init`` this process to the cluster (a driver), once."""
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False)
        self._connected = True

    def node_ids(self) -> list[str]:
        import ray

        return [n["NodeID"] for n in ray.nodes() if n["Alive"]]

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (0 is the head) with its raylet and workers, as a lost machine."""
        _kill_tree(self.procs[index].pid)

    def close(self) -> None:
        if self._connected:
            import ray

            ray.shutdown()
            self._connected = False
        for proc in reversed(self.procs):
            _kill_tree(proc.pid, signal.SIGTERM)
            _kill_tree(proc.pid)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        _kill_in(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill_in(root: Path) -> None:
    """Kill the Ray processes whose command line names ``root`` (its GCS, raylets, agents)."""
    needle = str(root)
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and any(needle in part for part in (p.info["cmdline"] or [])):
                _kill_tree(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _reap_orphans() -> None:
    """Remove the clusters of test sessions that are gone (killed before their ``close``)."""
    for root in Path("/tmp").glob(PREFIX + "*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if psutil.pid_exists(owner):
            continue
        _kill_in(root)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    with RayCluster.start(nodes=2) as rc:
        print(rc.address, flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
