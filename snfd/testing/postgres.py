"""PostgreSQL for tests: fresh databases on a shared server, private servers.

Most tests want an empty database: L{fresh_database} makes one on the
server named by C{SNFD_TEST_DATABASE_URL} and drops it when the test ends.
Tests that must restart PostgreSQL use L{throwaway_postgres}, a private
server on its own port; never restart the shared one.

The private servers run the PostgreSQL bundled in the pgserver wheel: it is
always installed with snfd (no Debian packages needed) and it is the very
server the embedded default runs in production.
"""

import os
import random
import secrets
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import attrs
import psycopg2
import psycopg2.extensions
from twisted.logger import Logger

from snfd.db.embedded import (
    ACCOUNT,
    Account,
    PostgresProcess,
    bundled_bindir,
    ensure_account,
    runnable_bindir,
)

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

#: Throwaway servers take a port in this range on 127.0.0.1.
PORTS = range(17000, 18000)

_log = Logger()


class TestServerUnavailable(Exception):
    """The shared test PostgreSQL cannot be reached."""


def admin_dsn() -> str:
    """The superuser DSN of the shared test server.

    C{SNFD_TEST_DATABASE_URL}, by default the local server on port 5432.
    """
    return os.environ.get("SNFD_TEST_DATABASE_URL", DEFAULT_ADMIN_DSN)


def dsn_with_database(dsn: str, dbname: str) -> str:
    """C{dsn} (a URI or C{key=value} string) pointed at database C{dbname}."""
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))
    return psycopg2.extensions.make_dsn(dsn, dbname=dbname)


def _admin_connect(dsn: str):
    try:
        conn = psycopg2.connect(dsn, connect_timeout=5)
    except psycopg2.OperationalError as e:
        reason = " ".join(str(e).split())
        raise TestServerUnavailable(
            f"the test PostgreSQL at {dsn} is unreachable ({reason}); start"
            " it or point SNFD_TEST_DATABASE_URL at one") from e
    conn.autocommit = True
    return conn


def _quote_ident(name: str) -> str:
    return '"{}"'.format(name.replace('"', '""'))


def drop_database(admin: str, dbname: str) -> None:
    """Disconnect everyone from C{dbname} and drop it, if it exists."""
    conn = _admin_connect(admin)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
            cur.execute(f"DROP DATABASE IF EXISTS {_quote_ident(dbname)}"
                        " WITH (FORCE)")
    finally:
        conn.close()


def create_database(prefix: str) -> tuple[str, str, str]:
    """Create an empty database named C{<prefix>_<hex>} on the
    L{admin_dsn} server: C{(admin_dsn, name, dsn)}.  The caller drops it
    (L{drop_database}); tests use L{fresh_database}, which does."""
    admin = admin_dsn()
    name = f"{prefix}_{secrets.token_hex(8)}"
    conn = _admin_connect(admin)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {_quote_ident(name)}")
    finally:
        conn.close()
    return admin, name, dsn_with_database(admin, name)


def query(dsn: str, sql: str, *args: object) -> list[tuple]:
    """Run one statement on its own connection and commit; its rows
    (empty for statements that return none)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def fresh_database(testcase, schemas=()) -> str:
    """Create a database for C{testcase}; return its DSN.

    The database, C{snfd_test_<hex>}, lives on the L{admin_dsn} server and
    is dropped (its sessions terminated first) by a cleanup registered on
    C{testcase}.  C{schemas} (L{snfd.db.migrations.Schema}s) are applied to
    it; without them it is empty.  An unreachable server raises
    L{TestServerUnavailable} rather than skipping: the test command
    guarantees a server.
    """
    admin, name, dsn = create_database("snfd_test")
    testcase.addCleanup(drop_database, admin, name)
    if schemas:
        from snfd.db import migrations

        conn = psycopg2.connect(dsn)
        try:
            migrations.upgrade(conn, list(schemas))
        finally:
            conn.close()
    return dsn


def started_pool(testcase, dsn: str, max_connections: int = 5):
    """A started L{snfd.db.pool.Database} on C{dsn}, closed at cleanup."""
    from twisted.internet import reactor

    from snfd.db.pool import Database
    from snfd.metrics import Metrics

    db = Database(dsn, reactor, Metrics(), application_name="test", min_connections=1,
                  max_connections=max_connections, retry_window=5)
    db.start()
    testcase.addCleanup(db.close)
    return db


def recorded_runs(testcase, db) -> list:
    """The names of the interactions ``db`` is asked for from now on
    (``run`` and ``read``), in order (``db`` is an ``IDatabase``; the
    recording ends at cleanup)."""
    names: list = []

    def wrap(how, name, interaction):
        names.append(name)
        return interaction

    _intercept(testcase, db, wrap)
    return names


@attrs.define
class Recorded:
    """One interaction asked of a recorded ``IDatabase``: how
    (``"run"``, ``"read"``), its name, the SQL of each statement."""

    how: str
    name: str
    statements: list = attrs.field(factory=list)


def recorded_statements(testcase, db) -> list:
    """A ``Recorded`` entry for each interaction ``db`` is asked for from
    now on, in order (the recording ends at cleanup)."""
    entries: list = []

    def wrap(how, name, interaction):
        entry = Recorded(how, name)
        entries.append(entry)
        return lambda txn, *a, **kw: interaction(_Counting(txn, entry.statements), *a, **kw)

    _intercept(testcase, db, wrap)
    return entries


class _Counting:
    """A cursor that notes each statement's SQL before executing it."""

    def __init__(self, txn, statements: list):
        self._txn = txn
        self._statements = statements

    def execute(self, sql, *args, **kwargs):
        self._statements.append(sql)
        return self._txn.execute(sql, *args, **kwargs)

    def __getattr__(self, attr):
        return getattr(self._txn, attr)


def _intercept(testcase, db, wrap) -> None:
    """Have ``db.run`` and ``db.read`` run ``wrap(how, name,
    interaction)`` instead of each interaction, until cleanup."""
    for how in ("run", "read"):
        original = getattr(db, how)

        def intercepted(name, interaction, *args, _how=how, _original=original, **kwargs):
            return _original(name, wrap(_how, name, interaction), *args, **kwargs)

        setattr(db, how, intercepted)
        testcase.addCleanup(setattr, db, how, original)


def _free_port() -> int:
    """A port in L{PORTS} that nothing listens on at 127.0.0.1 right now."""
    ports = list(PORTS)
    random.shuffle(ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in {PORTS} on 127.0.0.1")


class ThrowawayPostgres:
    """A private PostgreSQL in a temporary directory, for one test.

    It listens on 127.0.0.1 on a free port of L{PORTS} (kept across
    L{restart}) with durability off (C{fsync}, C{synchronous_commit},
    C{full_page_writes}) unless C{durable} (crash tests: with
    C{synchronous_commit} off a killed server loses commits it had
    acknowledged).  As root it runs as the C{postgres} account, or
    as C{snfd} (created if needed) where there is no C{postgres}.
    Nothing is started until L{start}; L{cleanup} stops it and removes
    every file.

    C{datadir} puts the data directory elsewhere (created on the first
    L{start}; removed by L{cleanup}), e.g. on a small filesystem that a
    test fills: the server's log then stays in the temporary directory,
    so that it is written even when the data's filesystem is full or
    read-only.  Its socket is in the data directory, whose path must be
    short (a Unix socket's path is at most 107 bytes).
    """

    def __init__(self, durable: bool = False, datadir: str | Path | None = None) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="snfd-pg-", dir="/tmp"))
        try:
            bindir = bundled_bindir()
            run_as = None
            if os.geteuid() == 0:
                try:
                    account = Account.named("postgres")
                except KeyError:
                    account = ensure_account(ACCOUNT, _log)
                # Ours, just made: let the account reach the data inside.
                os.chmod(self.base, 0o755)
                bindir = runnable_bindir(bindir, self.base, account, _log)
                run_as = account.name
            #: the data directory given (None: inside the temporary directory)
            self.datadir = Path(datadir).absolute() if datadir is not None else None
            self.process = PostgresProcess(
                self.datadir or self.base / "data", bindir=bindir,
                port=_free_port(), run_as=run_as, no_sync=not durable,
                settings={} if durable else {"fsync": "off", "synchronous_commit": "off",
                                             "full_page_writes": "off"})
            if self.datadir is not None:
                self.process.logfile = self.base / "server.log"
                self.process.logfile.touch(mode=0o600)
                if self.process.account is not None:
                    os.chown(self.process.logfile, self.process.account.uid,
                             self.process.account.gid)
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise

    @property
    def port(self) -> int:
        assert self.process.port is not None
        return self.process.port

    @property
    def dsn(self) -> str:
        """Superuser URI of the C{postgres} database over TCP."""
        return self.process.dsn

    def dsn_for(self, dbname: str) -> str:
        """Superuser URI of database C{dbname} over TCP."""
        return self.process.dsn_for(dbname)

    def start(self) -> None:
        """Start (initialising on first use); return once it accepts."""
        self.process.start()

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected."""
        self.process.stop()

    def restart(self) -> None:
        """Stop and start again on the same port and data."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server (killing it if it will not stop) and remove all."""
        try:
            self.process.stop()
        except Exception:
            self._kill()
            raise
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            if self.datadir is not None:
                shutil.rmtree(self.datadir, ignore_errors=True)

    def _kill(self) -> None:
        try:
            pid = int((self.process.datadir / "postmaster.pid")
                      .read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


def throwaway_postgres(testcase) -> ThrowawayPostgres:
    """Start a L{ThrowawayPostgres} removed by a cleanup on C{testcase}."""
    server = ThrowawayPostgres()
    testcase.addCleanup(server.cleanup)
    server.start()
    return server
