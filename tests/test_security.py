"""Security: no SQL built by string formatting, no password in any output, a private embedded server.

The SQL scan is AST-based and has two rules (see :func:`sql_findings`):

1. *Sinks*: a call to ``.execute(``, ``.executemany(``, ``.copy(``, ``.stream(``, ``sql.SQL(``,
   ``SQL(`` or ``sa.text(``/``text(`` whose query argument is an f-string with a substituted
   value, a ``%``-formatted string, a ``str.format`` call, or a local variable assigned from one
   of those in the same function.
2. *Builders*: anywhere in the package, an f-string / ``%`` / ``.format`` whose constant text
   looks like SQL (a keyword such as SELECT, FROM, WHERE, INSERT, UPDATE, DELETE, CREATE, DROP,
   COPY, LISTEN, NOTIFY, or a ``::`` cast). This catches helpers that return SQL text built from
   their arguments, which rule 1 cannot see through.

Composition with ``psycopg.sql.SQL(...).format(sql.Identifier(...))`` / ``schema.ident`` is the
sanctioned way and is never flagged (``.format`` is called on an ``sql.SQL`` object, not a str
literal); concatenating constant fragments (``"SELECT ..." + "..."``) is not flagged either.
Everything else must be in :data:`REVIEWED`, each entry with the reason it is safe.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.embedded import EmbeddedServer
from featurestore.errors import ConnectionError, FeatureStoreError

REPO = Path(__file__).resolve().parent.parent
# the package, and the migration scripts the wheel ships as featurestore.migrations
SCANNED = (REPO / "featurestore", REPO / "migrations")

SINK_METHODS = {"execute", "executemany", "exec_driver_sql", "copy", "stream"}
SINK_FUNCS = {"SQL", "text"}  # psycopg.sql.SQL / sql.SQL / SQL, sqlalchemy text / sa.text
SQL_WORDS = re.compile(r"\b(SELECT|FROM|WHERE|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|COPY|LISTEN|NOTIFY|TRUNCATE|GRANT|JOIN|SET)\b")


def looks_like_sql(text: str) -> bool:
    """SQL-looking constant text: starts with a keyword, has a ``::`` cast, or two keywords.

    (An error message such as "malformed binary COPY payload" has one keyword, not at the start.)
    """
    words = set(SQL_WORDS.findall(text))
    return bool(SQL_WORDS.match(text.lstrip(" ('")) or "::" in text or len(words) >= 2)

# (file relative to the package, enclosing function or "<module>") -> why it is safe.
# Reviewed by reading each function; a new entry needs the same review.
REVIEWED: dict[tuple[str, str], str] = {
    ("featurestore/write/copy.py", "_us_sql"): "interpolates a SQL expression chosen by the caller; every caller passes a "
    "constant column reference ('t.since', 'last_ts', 'b.ts'), never data",
    ("featurestore/write/copy.py", "_ts_us_sql"): "same: constant column references only",
    ("featurestore/read/sql.py", "_us"): "constant column references chosen by read/sql.py itself",
    ("featurestore/read/sql.py", "_from_us"): "constant bind-parameter placeholders chosen by read/sql.py itself",
    ("featurestore/read/sql.py", "range_sql"): "fragments from _select/_us/_quote; values stay %(name)s parameters",
    ("featurestore/read/sql.py", "latest_sql"): "same as range_sql",
    ("featurestore/read/sql.py", "latest_one_sql"): "same as range_sql",
    ("featurestore/read/sql.py", "training_sql"): "same as range_sql",
    ("featurestore/placement.py", "per_entity"): "interpolates fragments its callers in featurestore pass as "
    "constants (an unnest(...) of %s / %(name)s placeholders, an alias, column names); never data",
    ("featurestore/write/load.py", "_resolve"): "concatenates per_entity's constant FROM item and _ts_us_sql's "
    "constant expressions; the ids stay a %s parameter",
    ("featurestore/read/latest.py", "_checked_sql"): "wraps a statement from latest_one_sql (via _one_sql) in a "
    "constant fragment; the view name and version stay %(view_name)s / %(view_version)s parameters",
    ("featurestore/read/sql.py", "point_sql"): "same as range_sql",
    ("featurestore/read/sql.py", "estimate_sql"): "same as range_sql",
    ("featurestore/read/sql.py", "_known"): "a constant column name chosen by read/sql.py itself ('load_id', "
    "'superseded_by'); the knowledge time stays the %(known_at)s parameter of KNOWLEDGE_CTE",
    ("featurestore/read/sql.py", "known_source"): "table and column names through _quote (validated identifiers) "
    "and _known; no values",
    ("featurestore/read/sql.py", "_select"): "fragments from known_source and _quote; no values",
    ("featurestore/read/versions.py", "versions_sql"): "table and column names through _quote/history_table, "
    "bounds through _from_us over constant placeholders; values stay %(name)s parameters",
    ("featurestore/read/versions.py", "<module>"): "STAMPS_SQL: _us over the constant column 'committed_at'",
    ("featurestore/read/sql.py", "_version_at"): "alias, table and column names chosen by _last_known, "
    "through _quote; no values",
    ("featurestore/read/sql.py", "_last_known"): "fragments from _quote, _known, known_source and key/bound "
    "expressions chosen by the builders in read/sql.py (column references, bind placeholders); no values",
    # Safe but against the rule: a module constant in an f-string. Reported; the fix is
    # sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)).
}


# -- the scanner --------------------------------------------------------------------------------


def _is_str_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _formatting(node: ast.AST) -> str | None:
    """'f-string', '%', '.format' when ``node`` builds a string by formatting, else None."""
    if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
        return "f-string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and _is_str_const(node.left):
        return "%"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and _is_str_const(node.func.value)
    ):
        return ".format"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # "..." + f"..."
        return _formatting(node.left) or _formatting(node.right)
    return None


def _constant_text(node: ast.AST) -> str:
    """The literal text of a formatting expression (what would be SQL if it is SQL)."""
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if _is_str_const(v))  # type: ignore[attr-defined]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _constant_text(node.left)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _constant_text(node.left) + _constant_text(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _constant_text(node.func.value)
    if _is_str_const(node):
        return node.value  # type: ignore[attr-defined,no-any-return]
    return ""


def _concat_leaves(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _concat_leaves(node.left) + _concat_leaves(node.right)
    return [node]


def _safe_leaf(node: ast.AST) -> bool:
    """A piece of concatenated SQL that carries no data: a literal, a CONSTANT, a reviewed helper."""
    if _is_str_const(node):
        return True
    if isinstance(node, ast.Name) and (node.id.isupper() or node.id.startswith("_") and node.id[1:].isupper()):
        return True
    if isinstance(node, ast.Call):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        return name in {func for _, func in REVIEWED} and all(_is_str_const(a) for a in node.args)
    return False


def _sink_name(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Attribute) and f.attr in SINK_METHODS | SINK_FUNCS:
        return f.attr
    if isinstance(f, ast.Name) and f.id in SINK_FUNCS:
        return f.id
    return None


def _query_arg(call: ast.Call) -> ast.AST | None:
    if call.args:
        return call.args[0]
    for kw in call.keywords:
        if kw.arg in ("query", "statement", "sql", "text"):
            return kw.value
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.stack: list[str] = []
        self.assigned: list[dict[str, str]] = [{}]  # per function: local name -> formatting kind
        self.findings: list[tuple[str, int, str, str]] = []  # (file, line, function, what)

    def _func(self) -> str:
        return self.stack[-1] if self.stack else "<module>"

    def _add(self, node: ast.AST, what: str) -> None:
        self.findings.append((self.rel, node.lineno, self._func(), what))  # type: ignore[attr-defined]

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack.append(node.name)
        self.assigned.append({})
        self.generic_visit(node)
        self.assigned.pop()
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Assign(self, node: ast.Assign) -> None:
        kind = _formatting(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name):
                if kind:
                    self.assigned[-1][target.id] = kind
                else:
                    self.assigned[-1].pop(target.id, None)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        sink = _sink_name(node)
        arg = _query_arg(node) if sink else None
        if sink and arg is not None:
            kind = _formatting(arg)
            if kind is None and isinstance(arg, ast.Name):
                kind = self.assigned[-1].get(arg.id)
                if kind:
                    kind = f"{kind} via variable {arg.id!r}"
            if kind:
                self._add(node, f"{sink}() with SQL built by {kind}")
            elif isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add):
                bad = [leaf for leaf in _concat_leaves(arg) if not _safe_leaf(leaf)]
                if bad:
                    self._add(node, f"{sink}() with SQL concatenated from {ast.unparse(bad[0])[:50]!r}")
        self.generic_visit(node)

    def _builder(self, node: ast.AST) -> None:
        kind = _formatting(node)
        if kind and looks_like_sql(_constant_text(node)):
            self._add(node, f"SQL text built by {kind}: {_constant_text(node)[:60]!r}")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        self._builder(node)
        # nested f-strings inside format specs are part of this one

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Mod) and _is_str_const(node.left):
            self._builder(node)
        self.generic_visit(node)


def _scan_format_calls(tree: ast.AST, scanner: _Scanner) -> None:
    """'...'.format(...) builders (visit_Call handles sinks; this handles the builder rule)."""
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            child.parent = parent  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if _formatting(node) == ".format" and isinstance(node, ast.Call):
            if looks_like_sql(_constant_text(node)):
                func = node
                while func is not None and not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    func = getattr(func, "parent", None)
                name = func.name if func is not None else "<module>"  # type: ignore[union-attr]
                scanner.findings.append((scanner.rel, node.lineno, name, "SQL text built by .format"))


def sql_findings(roots: tuple[Path, ...] = SCANNED) -> list[tuple[str, int, str, str]]:
    """Every place the package builds SQL by string formatting: (file, line, function, what)."""
    out: list[tuple[str, int, str, str]] = []
    for path in sorted(p for root in roots for p in root.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(), filename=str(path))
        scanner = _Scanner(rel)
        scanner.visit(tree)
        _scan_format_calls(tree, scanner)
        out.extend(scanner.findings)
    return sorted(set(out))


def test_the_scanner_catches_what_it_must() -> None:
    code = '''
def bad(conn, sym, t, q):
    conn.execute(f"SELECT * FROM bars WHERE symbol = '{sym}'")
    conn.execute("DELETE FROM bars WHERE symbol = '%s'" % sym)
    conn.execute("SELECT {} FROM x".format(t))
    q = f"UPDATE t SET x = {sym}"
    conn.execute(q)
    cur.copy(f"COPY {t} FROM STDIN")
    sql.SQL(f"SELECT {t}")
def helper(col):
    return f"extract(epoch from {col})::int8"
def good(conn, t, ids):
    conn.execute("SELECT * FROM bars WHERE entity_id = ANY(%s)", (ids,))
    conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(t)))
    conn.execute("SELECT a " + "FROM b")
    conn.execute("SELECT " + _us_sql("t.ts") + " FROM b" + _CONST)
def concat(conn, sym):
    conn.execute("SELECT * FROM bars WHERE symbol = '" + sym + "'")
    raise ValueError(f"bad value {t}")
'''
    scanner = _Scanner("x.py")
    tree = ast.parse(code)
    scanner.visit(tree)
    _scan_format_calls(tree, scanner)
    funcs = {(f, what.split(" ")[0]) for _, _, f, what in scanner.findings}
    lines = {line for _, line, _, _ in scanner.findings}
    assert {3, 4, 5, 7, 8, 9, 11, 18} <= lines, scanner.findings
    assert all(f != "good" for f, _ in funcs), scanner.findings


def test_no_sql_is_built_by_string_formatting_outside_reviewed_helpers() -> None:
    findings = sql_findings()
    unreviewed = [f for f in findings if (f[0], f[2]) not in REVIEWED]
    report = "\n".join(f"{file}:{line} in {func}(): {what}" for file, line, func, what in unreviewed)
    assert not unreviewed, "SQL built by string formatting outside the reviewed helpers:\n" + report
    # the allowlist stays honest: every reviewed entry still exists
    stale = set(REVIEWED) - {(f[0], f[2]) for f in findings}
    assert not stale, f"REVIEWED entries no longer needed (remove them): {sorted(stale)}"


def test_read_render_refuses_anything_but_numbers_and_times() -> None:
    from featurestore.read import _literal

    for hostile in ("'; DROP TABLE bars; --", b"x", 1.5, object()):
        with pytest.raises(TypeError):
            _literal(hostile)
    import numpy as np

    with pytest.raises(TypeError):
        _literal(np.array(["a"], dtype=object))


# -- passwords ------------------------------------------------------------------------------

SECRET = "s3cr3t-Pw_7x"


def _with_password(url: URL) -> URL:
    return url.set(username=url.username or "postgres", password=SECRET)


def _all_text(exc: BaseException) -> str:
    """str, repr and the formatted traceback of an exception and its whole chain."""
    parts = []
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        parts += [str(e), repr(e)]
        e = e.__cause__ or e.__context__
    parts.append("".join(traceback.format_exception(exc)))
    return "\n".join(parts)


def test_password_never_appears_in_repr_info_stats_or_logs(
    db_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    url = _with_password(db_url)  # the test server trusts local sockets, so any password works
    caplog.set_level(logging.DEBUG)
    with FeatureStore(url, auto_migrate=True) as fs:
        texts = [repr(fs), str(fs.url), repr(fs.settings), repr(fs.db.engine), repr(fs.db.url), str(fs.info()), str(fs.stats())]
        from helpers import make_bars

        fs.ingest(make_bars(["AAA"], 30))
        fs.get_bars("AAA")
        texts.append(repr(fs.last_load))
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    for text in texts:
        assert SECRET not in text
    assert "***" in texts[0]  # the URL is shown, masked


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://fs:{SECRET}@/nodb?host=/nonexistent-socket-dir",
        f"postgresql://fs:{SECRET}@127.0.0.1:1/nodb",
        f"postgres://fs:{SECRET}@127.0.0.1:1/nodb?sslmode=disable",
    ],
)
def test_password_never_appears_in_connection_errors(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FeatureStoreError) as info:
        FeatureStore(url, pool_timeout=2)
    assert isinstance(info.value, ConnectionError)
    assert SECRET not in _all_text(info.value)
    assert "***" in str(info.value)  # the URL is shown, masked
    assert SECRET not in caplog.text


def test_password_never_appears_in_an_unparseable_url_error() -> None:
    for bad in (f"mysql://u:{SECRET}@h/db", f"postgresql+nodriver://u:{SECRET}@h/db", f"::{SECRET}::"):
        with pytest.raises(FeatureStoreError) as info:
            FeatureStore(bad)
        assert SECRET not in _all_text(info.value)


def test_password_never_appears_in_cli_output(db_url: URL) -> None:
    from featurestore.cli import cli

    url = _with_password(db_url).render_as_string(hide_password=False)
    runner = CliRunner()
    for args in (["--url", url, "info"], ["--url", url, "info", "--json"]):
        out = runner.invoke(cli, args, catch_exceptions=False)
        assert out.exit_code == 0, out.output
        assert SECRET not in out.output and "***" in out.output
    bad = f"postgresql://fs:{SECRET}@127.0.0.1:1/nodb"
    out = runner.invoke(cli, ["--url", bad, "info"])
    assert out.exit_code == 1
    assert SECRET not in out.output and (out.exception is None or SECRET not in _all_text(out.exception))
    # the environment variable path too
    out = runner.invoke(cli, ["info"], env={"FEATURESTORE_URL": url})
    assert out.exit_code == 0 and SECRET not in out.output


def test_password_never_appears_when_a_bulk_read_fails(db_url: URL) -> None:
    """The reader's ADBC connection is opened from the full URL: its errors must not echo it."""
    url = _with_password(db_url)
    with FeatureStore(url, cache=None) as fs:
        reader = fs.reader
        reader._uri = re.sub(r"host=[^&]*", "host=/nonexistent-socket-dir", reader._uri)  # a dead target
        assert SECRET in reader._uri
        with pytest.raises(Exception) as info:  # the type is test_reliability's business
            reader._fetch("SELECT 1", {})
        assert SECRET not in _all_text(info.value)


# -- the embedded server is private -----------------------------------------------------------


@pytest.fixture(scope="module")
def embedded(pg_server: EmbeddedServer | None) -> Iterator[EmbeddedServer]:
    """The session's embedded server, or (on an external test URL) a private one for this module
    in a private mkdtemp home (not pytest's shared temporary root: a concurrent session may
    re-permission that under a running server)."""
    if pg_server is not None:
        yield pg_server
        return
    home = Path(tempfile.mkdtemp(prefix="fs-sec-"))
    srv = EmbeddedServer(home, cleanup="keep")
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_embedded_server_listens_on_a_unix_socket_only(embedded: EmbeddedServer) -> None:
    st = embedded.status()
    assert st.running and st.pid and st.url()
    with psycopg.connect(st.url() or "", autocommit=True) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.info.host.startswith("/")
        assert conn.execute("SELECT inet_server_addr()").fetchone() == (None,)  # not over TCP
    postmaster = psutil.Process(st.pid)
    procs = [postmaster, *postmaster.children(recursive=True)]
    inet = [(p.pid, c) for p in procs for c in _inet_sockets(p)]
    assert inet == [], f"the embedded server has TCP/UDP sockets: {inet}"
    unix = [c for c in postmaster.net_connections(kind="unix") if c.status == psutil.CONN_LISTEN or c.laddr]
    assert any(str(c.laddr).endswith(".s.PGSQL.5432") for c in unix), unix
    # and nothing answers on the default TCP port on loopback
    with socket.socket() as s:
        s.settimeout(0.5)
        assert s.connect_ex(("127.0.0.1", 5432)) != 0 or _not_ours(5432, st.pid)


def _inet_sockets(p: psutil.Process) -> list[Any]:
    """A process's TCP/UDP sockets; none if it exited meanwhile (a backend may end between listing and asking)."""
    try:
        return list(p.net_connections(kind="inet"))
    except (psutil.NoSuchProcess, FileNotFoundError):
        return []


def _not_ours(port: int, pid: int) -> bool:
    owners = {c.pid for c in psutil.net_connections(kind="tcp") if c.laddr and c.laddr.port == port}
    return pid not in owners


def test_embedded_data_directory_is_private(embedded: EmbeddedServer) -> None:
    mode = stat.S_IMODE(os.stat(embedded.data_dir).st_mode)
    assert mode == 0o700, oct(mode)
    # trust auth is acceptable only because nobody else can reach the socket directory's server
    # over the network; the hba file must not open a host (TCP) line to the world
    hba = (embedded.data_dir / "pg_hba.conf").read_text()
    active = [ln for ln in hba.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert not any(ln.split()[0].startswith("host") and "0.0.0.0/0" in ln for ln in active), active
