"""A private PostgreSQL primary with a streaming standby, for tests of a
node that must find the promoted standby (a database URL naming both,
``target_session_attrs=read-write``).

Both servers run from the machine's PostgreSQL (``/usr/lib/postgresql/*/bin``)
as the ``postgres`` account, on free TCP ports of 127.0.0.1 with ``trust``
authentication, in a private directory removed by ``stop``.  The standby
is made with ``pg_basebackup -R`` and a replication slot, and streams from
the primary; ``kill_primary`` crashes the primary (SIGKILL of the
postmaster, then of what it left) and ``promote`` makes the standby the
primary (``pg_ctl promote -w``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from snfd.testing.node import free_port

_TIMEOUT = 60


def bindir() -> Path | None:
    """The newest installed PostgreSQL's ``bin``, if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    return found[-1].parent if found else None


def standby_unavailable() -> str | None:
    """Why a primary with a standby cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (the servers run as the postgres account)"
    if bindir() is None:
        return "no PostgreSQL server installed (apt-get install postgresql)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres account"
    return None


class PrimaryWithStandby:
    """A primary and a streaming standby (see the module docstring)."""

    def __init__(self) -> None:
        self.bin = bindir()
        self.account = pwd.getpwnam("postgres")
        self.base = Path(tempfile.mkdtemp(prefix="snfd-pgpair-"))
        os.chown(self.base, self.account.pw_uid, self.account.pw_gid)
        self.primary = self.base / "primary"
        self.standby = self.base / "standby"
        self.primary_port = free_port()
        self.standby_port = free_port()

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.bin is not None
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.base), "LC_ALL": "C"}
        result = subprocess.run([str(self.bin / tool), *args], env=env, cwd=self.base,
                                user=self.account.pw_uid, group=self.account.pw_gid,
                                capture_output=True, text=True, timeout=_TIMEOUT)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {result.stderr or result.stdout}")
        return result

    def _configure(self, datadir: Path, port: int) -> None:
        with (datadir / "postgresql.auto.conf").open("a") as f:
            f.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{datadir}'\n"
                    "fsync = off\nfull_page_writes = off\n")

    def dsn(self, dbname: str = "postgres") -> str:
        """Both servers, the writable one chosen at each connection; the
        standby is named first, so a client that did not choose by
        ``target_session_attrs`` would land on a read-only server."""
        return (f"postgresql://postgres@127.0.0.1:{self.standby_port},"
                f"127.0.0.1:{self.primary_port}/{dbname}"
                "?target_session_attrs=read-write&connect_timeout=2")

    def primary_dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.primary_port}/{dbname}"

    def start(self) -> None:
        try:
            self._run("initdb", "-D", str(self.primary), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--no-locale", "--no-sync")
            self._configure(self.primary, self.primary_port)
            with (self.primary / "postgresql.auto.conf").open("a") as f:
                f.write("wal_level = replica\nmax_wal_senders = 5\n"
                        "max_replication_slots = 5\nhot_standby = on\n")
            with (self.primary / "pg_hba.conf").open("a") as f:
                f.write("host replication all 127.0.0.1/32 trust\n")
            self._run("pg_ctl", "start", "-w", "-D", str(self.primary),
                      "-l", str(self.base / "primary.log"))
            self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port),
                      "-U", "postgres", "-D", str(self.standby), "-R", "-X", "stream",
                      "-C", "-S", "standby1", "-c", "fast")
            self._configure(self.standby, self.standby_port)
            # Its walreceiver's application_name, which the primary's
            # synchronous_standby_names can then name.
            with (self.standby / "postgresql.auto.conf").open("a") as f:
                f.write("cluster_name = 'standby1'\n")
            self._run("pg_ctl", "start", "-w", "-D", str(self.standby),
                      "-l", str(self.base / "standby.log"))
        except BaseException:
            self.stop()
            raise

    def create_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.primary_dsn())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Until the standby has replayed everything the primary wrote."""
        import psycopg2

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = psycopg2.connect(self.primary_dsn())
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_current_wal_lsn() = replay_lsn"
                                " FROM pg_stat_replication")
                    row = cur.fetchone()
            finally:
                conn.close()
            if row and row[0]:
                return
            time.sleep(0.1)
        raise RuntimeError("the standby did not catch up")

    def _postmaster(self, datadir: Path) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((datadir / "postmaster.pid").read_text().split()[0])
        return None

    def pids(self) -> list[int]:
        """The postmasters running now (primary, standby), for a caller that
        accounts for their CPU; their backends are their children."""
        return [pid for d in (self.primary, self.standby)
                if (pid := self._postmaster(d)) is not None]

    def kill_primary(self) -> None:
        """Crash the primary: SIGKILL its postmaster and every child."""
        pid = self._postmaster(self.primary)
        if pid is None:
            return
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                  text=True).stdout.split()
        for p in [pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def promote(self) -> None:
        self._run("pg_ctl", "promote", "-w", "-D", str(self.standby))

    def stop(self) -> None:
        for datadir in (self.standby, self.primary):
            if self._postmaster(datadir) is not None:
                with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                    self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(datadir))
        shutil.rmtree(self.base, ignore_errors=True)


__all__ = ["PrimaryWithStandby", "bindir", "standby_unavailable"]
