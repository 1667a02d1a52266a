"""The embedded PostgreSQL: a private server inside the node's state directory.

When no database URL is configured, the node runs its own PostgreSQL from the
binaries bundled in the ``pgserver`` wheel.  Only the binaries are used: the
lifecycle is ours, because pgserver's own one silently creates a user and
opens up parent directories when it runs as root.

PostgreSQL refuses to run as root.  As root we therefore run every PostgreSQL
command as the dedicated system account ``snfd``, creating it (and saying so
in the log) when it is missing.  The state directory is private (0700); as
root we let that account alone enter it (group ``snfd``, mode 0710).  We
never change the permissions of a directory that is not ours: when the
account cannot reach the data directory we stop with an error naming the
directory, and when it cannot run the bundled binaries (a virtualenv under a
private home) we copy them once into the state directory.  The data
directory is 0700 (an existing one open to others is closed at start).

Everything here blocks (it runs ``initdb`` and ``pg_ctl``); call it before the
reactor starts or from a thread.
"""

import importlib.util
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg2
from twisted.logger import Logger, LogLevel, formatEvent

#: The account the embedded server runs as when the node runs as root.
ACCOUNT = "snfd"

#: The database the node uses inside the embedded server.
DATABASE = "snfd"

#: The port number in the Unix socket's name when no TCP port is asked for.
SOCKET_PORT = 5432

# sun_path holds 108 bytes including the terminating NUL.
_SOCKET_PATH_MAX = 107

# pg_ctl pastes the data directory and log file between double quotes into a
# /bin/sh command line; these characters would break out of them.
_SHELL_UNSAFE = re.compile(r'["$`\\\n]')

_TIMEOUT = 60


class EmbeddedPostgresError(Exception):
    """The embedded PostgreSQL could not be set up; the message says why."""


@dataclass(frozen=True)
class Account:
    """A system account that PostgreSQL commands run as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @classmethod
    def named(cls, name: str) -> "Account":
        """Look an account up; raise L{KeyError} when there is none."""
        pw = pwd.getpwnam(name)
        return cls(
            name=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid,
            groups=tuple(os.getgrouplist(pw.pw_name, pw.pw_gid)),
            home=pw.pw_dir)

    def may_traverse(self, path: Path) -> bool:
        """Whether this account may enter the directory C{path} (mode bits)."""
        st = path.stat()
        if st.st_uid == self.uid:
            return bool(st.st_mode & stat.S_IXUSR)
        if st.st_gid in self.groups:
            return bool(st.st_mode & stat.S_IXGRP)
        return bool(st.st_mode & stat.S_IXOTH)


def _is_root() -> bool:
    return os.geteuid() == 0


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def bundled_bindir() -> Path:
    """The C{bin} directory of the PostgreSQL bundled in the pgserver wheel.

    Found from the installed package's location, without importing pgserver.
    """
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the pgserver package is not installed, so there is no bundled"
            " PostgreSQL; install pgserver or configure a database URL")
    bindir = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    if not (bindir / "postgres").is_file():
        raise EmbeddedPostgresError(
            f"the pgserver package has no PostgreSQL binaries in {bindir}")
    return bindir


class PostgresProcess:
    """One PostgreSQL server on one data directory, driven with C{pg_ctl}.

    The server listens on a Unix socket in the data directory (reachable only
    by the account it runs as, and root) and, when a C{port} is given, on TCP
    127.0.0.1 as well.  Authentication is C{trust} for the C{postgres}
    superuser, so never give a port on a machine with untrusted local users.

    The server is a daemon of its own: it outlives this object and this
    process, and L{start} adopts one already running on the data directory.
    """

    def __init__(
        self,
        datadir: Path,
        *,
        bindir: Path,
        port: int | None = None,
        run_as: str | None = None,
        settings: Mapping[str, str] | None = None,
        no_sync: bool = False,
    ) -> None:
        """
        @param datadir: the data directory; created and initialised on the
            first L{start}.
        @param bindir: where C{initdb}, C{pg_ctl} and C{postgres} are.
        @param port: a TCP port on 127.0.0.1, or C{None} for the Unix socket
            only.
        @param run_as: the account that runs PostgreSQL; required as root,
            and when not root it may only name the current user.
        @param settings: extra server settings (C{-c name=value}).
        @param no_sync: pass C{--no-sync} to initdb (tests).
        """
        self.datadir = Path(datadir).absolute()
        self.bindir = Path(bindir).absolute()
        self.port = port
        self.settings = dict(settings or {})
        self.no_sync = no_sync
        #: Whether the last L{start} found the server running and kept it.
        self.adopted = False
        self.socket_dir = self.datadir
        self.logfile = self.datadir / "server.log"
        self.account = _account_for(run_as)
        if _SHELL_UNSAFE.search(str(self.datadir)):
            raise EmbeddedPostgresError(
                f"the PostgreSQL data directory {self.datadir!r} contains a"
                " quote, dollar, backquote, backslash or newline, which"
                " pg_ctl cannot handle; choose another state directory")
        socket = self.socket_dir / f".s.PGSQL.{self._socket_port}"
        if len(os.fsencode(socket)) > _SOCKET_PATH_MAX:
            raise EmbeddedPostgresError(
                f"the PostgreSQL socket path {socket} is"
                f" {len(os.fsencode(socket))} bytes, over the"
                f" {_SOCKET_PATH_MAX}-byte limit of Unix sockets; use a"
                " shorter state directory (SNFD_STATE_DIR)")

    @property
    def _socket_port(self) -> int:
        return SOCKET_PORT if self.port is None else self.port

    @property
    def dsn(self) -> str:
        """A libpq URI for the C{postgres} database as C{postgres}."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        """A libpq URI for database C{dbname} as C{postgres}."""
        db = quote(dbname, safe="")
        if self.port is None:
            host = quote(str(self.socket_dir), safe="/")
            return (f"postgresql://postgres@/{db}"
                    f"?host={host}&port={SOCKET_PORT}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        kwargs: dict = {}
        if self.account is not None:
            env.update(HOME=self.account.home, USER=self.account.name,
                       LOGNAME=self.account.name)
            kwargs.update(user=self.account.uid, group=self.account.gid,
                          extra_groups=list(self.account.groups))
        try:
            return subprocess.run(
                [str(self.bindir / tool), *args], check=False, env=env,
                cwd="/", stdin=subprocess.DEVNULL, capture_output=True,
                text=True, timeout=_TIMEOUT + 10, **kwargs)
        except (OSError, subprocess.SubprocessError) as e:
            raise EmbeddedPostgresError(
                f"could not run {self.bindir / tool}: {e}") from e

    def _prepare(self) -> None:
        """Create, own and initialise the data directory if needed."""
        if not self.datadir.exists():
            self.datadir.mkdir(mode=0o700, parents=True)
            os.chmod(self.datadir, 0o700)
        elif stat.S_IMODE(self.datadir.stat().st_mode) & 0o077:
            os.chmod(self.datadir, 0o700)  # the database is the node's alone
        if self.account is not None and \
                self.datadir.stat().st_uid != self.account.uid:
            _chown_tree(self.datadir, self.account)
        if (self.datadir / "PG_VERSION").exists():
            return
        args = ["-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--no-locale"]
        if self.no_sync:
            args.append("--no-sync")
        result = self._run("initdb", *args)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed for {self.datadir}:"
                f" {_last_line(result.stderr + result.stdout)}")

    def _postmaster(self) -> list[str]:
        try:
            return (self.datadir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _adoptable(self) -> bool:
        """Whether the running server listens where this object would."""
        lines = self._postmaster()
        if len(lines) < 6:
            return False
        listen = "" if self.port is None else "127.0.0.1"
        return (lines[3].strip() == str(self._socket_port)
                and lines[4].strip() == str(self.socket_dir)
                and lines[5].strip() == listen)

    def is_running(self) -> bool:
        """Whether a server is running on the data directory."""
        if not (self.datadir / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.datadir)
                         ).returncode == 0

    def start(self) -> None:
        """Initialise if needed and start; return when it accepts connections.

        A server already running on the data directory (left by a node that
        was killed) is adopted when it listens where this object would, and
        restarted otherwise.
        """
        self._prepare()
        self.adopted = False
        if self.is_running():
            if self._adoptable():
                self.adopted = True
                return
            self.stop()
        options = ["-k", str(self.socket_dir),
                   "-c", "listen_addresses=" + (
                       "" if self.port is None else "127.0.0.1"),
                   "-p", str(self._socket_port)]
        for name, value in self.settings.items():
            options += ["-c", f"{name}={value}"]
        result = self._run(
            "pg_ctl", "start", "-w", "-t", str(_TIMEOUT),
            "-D", str(self.datadir), "-l", str(self.logfile),
            "-o", " ".join(shlex.quote(o) for o in options))
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"PostgreSQL in {self.datadir} did not start:"
                f" {self._log_tail() or _last_line(result.stderr)}"
                f" (log: {self.logfile})")

    def _log_tail(self) -> str:
        """Why the last start failed, from the server's log: the last FATAL
        or PANIC line of that start (what follows it is the shutdown), else
        its last line."""
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text[-8000:].splitlines() if line.strip()]
        for i in range(len(lines) - 1, -1, -1):
            if "starting PostgreSQL" in lines[i]:
                lines = lines[i:]
                break
        for line in reversed(lines):
            if "FATAL:" in line or "PANIC:" in line:
                return line
        return lines[-1] if lines else ""

    def stop(self) -> None:
        """Fast shutdown (disconnect clients, no crash recovery needed); wait.

        Does nothing when the server is not running.
        """
        if not self.is_running():
            return
        result = self._run("pg_ctl", "stop", "-m", "fast", "-w",
                           "-t", str(_TIMEOUT), "-D", str(self.datadir))
        if result.returncode != 0 and self.is_running():
            raise EmbeddedPostgresError(
                f"PostgreSQL in {self.datadir} did not stop:"
                f" {_last_line(result.stderr)}")

    def version(self) -> str:
        """The server's version number, e.g. C{"16.2"}."""
        return _version(self.bindir)


def _account_for(run_as: str | None) -> Account | None:
    """The account to switch to, or C{None} to run as ourselves."""
    if not _is_root():
        if run_as is not None and run_as != pwd.getpwuid(os.geteuid()).pw_name:
            raise EmbeddedPostgresError(
                f"cannot run PostgreSQL as {run_as}: only root can switch"
                " accounts; leave run_as unset")
        return None
    if run_as is None:
        raise EmbeddedPostgresError(
            "PostgreSQL refuses to run as root; name an unprivileged account"
            " to run it as (run_as)")
    try:
        return Account.named(run_as)
    except KeyError:
        raise EmbeddedPostgresError(
            f"there is no account {run_as} to run PostgreSQL as") from None


def _chown_tree(top: Path, account: Account) -> None:
    os.chown(top, account.uid, account.gid)
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), account.uid, account.gid)


def _version(bindir: Path) -> str:
    """The version of the PostgreSQL in C{bindir}; safe to run as root."""
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True,
            text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise EmbeddedPostgresError(
            f"could not run {bindir / 'postgres'} --version: {e}") from e
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    if match is None:
        raise EmbeddedPostgresError(
            f"cannot read a version from {bindir / 'postgres'}: {out.strip()}")
    return match.group(1)


def ensure_account(name: str, log) -> Account:
    """Return the system account C{name}, creating it if missing (as root).

    The account has no home and no login shell; its creation is logged,
    since it changes the machine.
    """
    try:
        return Account.named(name)
    except KeyError:
        pass
    command = ["useradd", "--system", "--no-create-home",
               "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
               name]
    try:
        result = subprocess.run(command, check=False, capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise EmbeddedPostgresError(
            f"could not create the system account {name} to run PostgreSQL"
            f" as ({e}); create it yourself") from e
    if result.returncode != 0:
        raise EmbeddedPostgresError(
            f"could not create the system account {name} to run PostgreSQL"
            f" as: {_last_line(result.stderr)}; create it yourself")
    # A twisted.logger.Logger, which has warn() and no warning().
    log.warn(
        "Created the system account {account} ({command}): PostgreSQL"
        " refuses to run as root, so the embedded server runs as it",
        account=name, command=" ".join(command))
    return Account.named(name)


def _let_traverse(state_dir: Path, account: Account) -> None:
    """Let C{account} (the one PostgreSQL runs as) enter our private state
    directory: its group becomes the account's, with search permission
    only (mode 0710), so other accounts still cannot enter it.  A directory
    that is not ours, or that the account can already enter, is left as
    it is."""
    st = state_dir.stat()
    if st.st_uid != os.geteuid() or account.may_traverse(state_dir):
        return
    os.chown(state_dir, -1, account.gid)
    os.chmod(state_dir, (stat.S_IMODE(st.st_mode) & 0o700) | 0o010)


def first_closed_directory(path: Path, account: Account) -> Path | None:
    """The first directory from C{/} down to C{path} that C{account} cannot
    enter, or C{None} when it can reach C{path}."""
    path = Path(path).absolute()
    for directory in [*reversed(path.parents), path]:
        if not account.may_traverse(directory):
            return directory
    return None


def _runs(bindir: Path, account: Account, tools: Sequence[str]) -> bool:
    """Whether C{account} can run each of C{tools} from C{bindir}."""
    for tool in tools:
        try:
            result = subprocess.run(
                [str(bindir / tool), "--version"], check=False,
                capture_output=True, cwd="/", user=account.uid,
                group=account.gid, extra_groups=list(account.groups),
                timeout=30)
        except (OSError, subprocess.SubprocessError):
            return False
        if result.returncode != 0:
            return False
    return True


def runnable_bindir(bindir: Path, cache_dir: Path, account: Account,
                    log) -> Path:
    """A bin directory with the same PostgreSQL that C{account} can run.

    That is C{bindir} itself when the account can run it.  Otherwise the
    installation around it is copied once, root-owned and world-readable,
    into C{cache_dir/pgsql-<version>} (built in a temporary directory and
    renamed into place), and the copy's bin directory is returned.

    The copy keeps the wheel's layout, C{pgserver/pginstall/...} next to
    C{pgserver.libs/}: the wheel's programs find libpq through the run path
    C{$ORIGIN/../../../pgserver.libs}.
    """
    tools = ("postgres", "pg_ctl", "initdb")
    if _runs(bindir, account, tools):
        return bindir
    cache_dir = Path(cache_dir).absolute()
    install = bindir.parent
    package = install.parent
    dest = cache_dir / f"pgsql-{_version(bindir)}"
    copied = dest / package.name / install.name / bindir.name
    if not dest.exists():
        _copy_installation(install, dest)
        log.info(
            "Copied the bundled PostgreSQL to {dest}: the {account} account"
            " cannot run it from {bindir}", dest=str(dest),
            account=account.name, bindir=str(bindir))
    if not _runs(copied, account, tools):
        raise EmbeddedPostgresError(
            f"the {account.name} account cannot run PostgreSQL from {bindir}"
            f" nor from its copy in {copied}")
    return copied


def _copy_installation(install: Path, dest: Path) -> None:
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        (tmp / package.name).mkdir()
        shutil.copytree(install, tmp / package.name / install.name,
                        symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        for directory in (tmp, tmp / package.name):
            os.chmod(directory, 0o755)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
            # Another process put its copy in place first; use that.
    except OSError as e:
        raise EmbeddedPostgresError(
            f"could not copy the bundled PostgreSQL from {install} to"
            f" {dest}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def create_database(dsn: str, name: str) -> bool:
    """Create database C{name} on the server at C{dsn} unless it exists.

    @return: whether it was created.
    """
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                        (name,))
            if cur.fetchone() is not None:
                return False
            cur.execute('CREATE DATABASE "{}"'.format(name.replace('"', '""')))
            return True
    finally:
        conn.close()


def ensure_embedded(state_dir: Path, log, *,
                    bindir: Path | None = None) -> PostgresProcess:
    """Start (or adopt) the node's embedded PostgreSQL in C{state_dir}.

    The data directory is C{state_dir/postgres}; the server listens only on
    a Unix socket inside it.  The database C{snfd} is created if absent.
    The caller connects with C{dsn_for("snfd")} and stops the returned
    process when the node stops (the server does not die with the node).

    As root the server runs as the system account C{snfd}, created if
    missing; see the module docstring.

    @param log: a L{twisted.logger.Logger}.
    @param bindir: the PostgreSQL to use; the bundled one by default.
    """
    state_dir = Path(state_dir).absolute()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    datadir = state_dir / "postgres"
    bindir = bundled_bindir() if bindir is None else Path(bindir)
    run_as = None
    if _is_root():
        account = ensure_account(ACCOUNT, log)
        _let_traverse(state_dir, account)
        closed = first_closed_directory(state_dir, account)
        if closed is not None:
            raise EmbeddedPostgresError(
                f"the {account.name} account that runs the embedded"
                f" PostgreSQL cannot enter {closed} (mode"
                f" {stat.S_IMODE(closed.stat().st_mode):o}), so it cannot"
                f" reach {datadir}; set SNFD_STATE_DIR to a directory it can"
                " reach, e.g. /var/lib/snfd")
        bindir = runnable_bindir(bindir, state_dir, account, log)
        run_as = account.name
    pg = PostgresProcess(datadir, bindir=bindir, run_as=run_as)
    started = time.monotonic()
    pg.start()
    if pg.adopted:
        log.info("Adopted the PostgreSQL already running in {datadir}",
                 datadir=str(datadir))
    try:
        if create_database(pg.dsn, DATABASE):
            log.info("Created database {name} in the embedded PostgreSQL",
                     name=DATABASE)
    except psycopg2.Error as e:
        if not pg.adopted:
            pg.stop()
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL in {datadir} does not answer:"
            f" {_last_line(str(e))}") from e
    log.info(
        "Embedded PostgreSQL {version} ready in {datadir} as {account}"
        " ({seconds:.2f} s)", version=pg.version(), datadir=str(datadir),
        account=run_as or pwd.getpwuid(os.geteuid()).pw_name,
        seconds=time.monotonic() - started)
    return pg


def _command_observer(event: dict) -> None:
    if event["log_level"] >= LogLevel.warn:
        print(formatEvent(event), file=sys.stderr)


def embedded_for_command(
        state_dir: Path) -> tuple[PostgresProcess | None, str]:
    """The node's embedded PostgreSQL for a one-off command (snf-manage).

    Starts the server unless the node already runs it; warnings (such as
    the creation of the C{snfd} account) go to standard error.

    @return: C{(process, dsn)}: the DSN of database C{snfd}, and the process
        to C{stop()} when the command is done, or C{None} when the server
        was already running and must be left alone.
    """
    pg = ensure_embedded(state_dir, Logger(observer=_command_observer))  # type: ignore[arg-type]
    return (None if pg.adopted else pg), pg.dsn_for(DATABASE)
