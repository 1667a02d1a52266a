"""A real OpenStack Keystone on loopback, to run benchmarks against.

``keystone_venv`` installs Keystone 2025.2 (``keystone==28.1.0``) into its own
virtualenv on first use (default ``/work/keystone-venv``).  ``running_keystone``
then starts, in a temporary directory:

- a private ``memcached -l 127.0.0.1 -U 0`` on a free port (Keystone's cache,
  backend ``oslo_cache.memcache_pool``, the one its docs recommend; caching on
  for tokens, identity, assignment, resource and catalog);
- a fresh database of the test PostgreSQL (``snfd.testing.postgres``),
  filled by ``keystone-manage db_sync``;
- fernet token and credential keys (``keystone-manage fernet_setup`` /
  ``credential_setup``) in the temporary directory;
- ``keystone-manage bootstrap``: user ``admin`` (a random password, bcrypt
  with ``HASH_ROUNDS`` rounds), project ``admin``, role ``admin``, region
  ``RegionOne``, identity endpoint at the peer's own URL;
- Keystone's WSGI app (``keystone.wsgi.api:application``) under gunicorn:
  ``WORKERS`` processes of ``THREADS`` threads (``gthread``) on a free port.

It yields a ``KeystonePeer`` once ``GET /v3`` answers 200 and stops
gunicorn and memcached, drops the database and removes the directory on
exit.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from snfd.testing.node import free_port
from snfd.testing.postgres import create_database, drop_database, query

#: Exact versions verified together on Python 3.11 (Keystone 2025.2 "Flamingo").
PACKAGES = (
    "keystone==28.1.0",
    "psycopg2-binary==2.9.13",
    "gunicorn==27.0.1",
    "python-memcached==1.62",  # oslo_cache.memcache_pool's client
    "SQLAlchemy==2.1.9",
    "oslo.db==18.1.1",
    "oslo.cache==4.3.0",
    "dogpile.cache==1.5.0",
    "bcrypt==5.0.0",
    "cryptography==50.0.2",
)
DEFAULT_VENV = Path("/work/keystone-venv")
WORKERS, THREADS = 4, 2
#: bcrypt (Keystone's default algorithm) at 2**11 rounds: ~120-150 ms per
#: verification here, the cost of snfd's argon2id defaults (~120 ms).
HASH_ALGORITHM, HASH_ROUNDS = "bcrypt", 11


def keystone_venv(path: Path = DEFAULT_VENV) -> Path:
    """The ``bin`` directory of the virtualenv at ``path`` with ``PACKAGES`` in
    it, made and installed on first use (a ``.installed-keystone-<version>``
    marker)."""
    stamp = path / f".installed-{PACKAGES[0].replace('==', '-')}"
    if not stamp.exists():
        print(f"==> installing {PACKAGES[0]} into {path}", file=sys.stderr)
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", *PACKAGES], check=True,
                       stdout=subprocess.DEVNULL)
        stamp.touch()
    return path / "bin"


@dataclass
class KeystonePeer:
    url: str  # the API is under url + "/v3"
    username: str  # in domain "Default"
    password: str
    project_id: str
    bindir: Path
    config: Path

    def hash_cost(self, repeat: int = 5) -> float:
        """Seconds of one password verification with this Keystone's own
        hasher and configuration, on one core."""
        script = (
            "import time, keystone.conf\n"
            "from keystone.common import password_hashing as ph\n"
            "keystone.conf.configure()\n"
            f"keystone.conf.CONF(['--config-file', {str(self.config)!r}], project='keystone')\n"
            "h = ph.hash_password('benchmark password')\n"
            "t = time.perf_counter()\n"
            f"for _ in range({repeat}): assert ph.check_password('benchmark password', h)\n"
            f"print((time.perf_counter() - t) / {repeat})\n")
        out = subprocess.run([str(self.bindir / "python"), "-W", "ignore", "-c", script],
                             capture_output=True, text=True, check=True)
        return float(out.stdout.split()[-1])


def _config(root: Path, dsn: str, memcached_port: int) -> str:
    caching = "".join(f"[{group}]\ncaching = true\n"
                      for group in ("assignment", "resource", "catalog", "role"))
    return (
        f"[DEFAULT]\nlog_file = {root / 'keystone.log'}\n"
        f"[database]\nconnection = {dsn.replace('postgresql://', 'postgresql+psycopg2://', 1)}\n"
        f"[token]\nprovider = fernet\ncaching = true\n"
        f"[fernet_tokens]\nkey_repository = {root / 'fernet-keys'}\n"
        f"[fernet_receipts]\nkey_repository = {root / 'fernet-receipts'}\n"
        f"[credential]\nkey_repository = {root / 'credential-keys'}\n"
        "[cache]\nenabled = true\nbackend = oslo_cache.memcache_pool\n"
        f"memcache_servers = 127.0.0.1:{memcached_port}\n"
        f"[identity]\ncaching = true\npassword_hash_algorithm = {HASH_ALGORITHM}\n"
        f"password_hash_rounds = {HASH_ROUNDS}\n" + caching)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL, to the process group (its own session) of ``proc``."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(15)
    with contextlib.suppress(ProcessLookupError):  # the workers may outlive the arbiter
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(10)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), 1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{proc.args[0]} did not listen on {port}") from None
            time.sleep(0.05)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running_keystone(venv: Path = DEFAULT_VENV, timeout: float = 120.0) -> Iterator[KeystonePeer]:
    """A started Keystone (see the module docstring); everything it started is
    stopped and removed on exit."""
    bindir = keystone_venv(venv)
    root = Path(tempfile.mkdtemp(prefix="snfd-bench-keystone-"))
    memcached = gunicorn = None
    database = None
    try:
        mport, port = free_port(), free_port()
        url = f"http://127.0.0.1:{port}"
        with open(root / "memcached.log", "ab") as log:
            memcached = subprocess.Popen(
                ["memcached", "-p", str(mport), "-l", "127.0.0.1", "-U", "0",
                 "-u", getpass.getuser()],  # -u: memcached refuses root without it
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        _wait_listening(memcached, mport, root / "memcached.log")
        admin, dbname, dsn = create_database("keystone_bench")
        database = (admin, dbname)
        config = root / "keystone.conf"
        config.write_text(_config(root, dsn, mport))
        env = dict(os.environ, OS_KEYSTONE_CONFIG_DIR=str(root))
        env.pop("VIRTUAL_ENV", None)
        user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
        password = secrets.token_urlsafe(16)

        def manage(*argv: str) -> None:
            proc = subprocess.run([str(bindir / "keystone-manage"), "--config-file", str(config),
                                   *argv], capture_output=True, text=True, env=env, check=False)
            if proc.returncode:
                raise SystemExit(f"keystone-manage {argv[0]} failed:\n{proc.stderr[-3000:]}"
                                 f"\n{_tail(root / 'keystone.log')}")

        manage("db_sync")
        manage("fernet_setup", "--keystone-user", user, "--keystone-group", group)
        manage("credential_setup", "--keystone-user", user, "--keystone-group", group)
        manage("bootstrap", "--bootstrap-username", "admin", f"--bootstrap-password={password}",
               "--bootstrap-project-name", "admin", "--bootstrap-role-name", "admin",
               "--bootstrap-service-name", "keystone", "--bootstrap-region-id", "RegionOne",
               *(a for kind in ("admin", "internal", "public")
                 for a in (f"--bootstrap-{kind}-url", url + "/v3")))
        [(project_id,)] = query(dsn, "SELECT id FROM project WHERE name = 'admin'")

        # Keystone parses sys.argv with oslo.config: gunicorn takes no arguments
        # and reads ./gunicorn.conf.py instead.
        (root / "gunicorn.conf.py").write_text(
            f"bind = '127.0.0.1:{port}'\nworkers = {WORKERS}\nthreads = {THREADS}\n"
            "worker_class = 'gthread'\nkeepalive = 75\ncontrol_socket_disable = True\n"
            "wsgi_app = 'keystone.wsgi.api:application'\n")
        with open(root / "gunicorn.log", "ab") as log:
            gunicorn = subprocess.Popen(
                [str(bindir / "gunicorn")], cwd=root, env=env, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if gunicorn.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{_tail(root / 'gunicorn.log')}")
            try:
                with urllib.request.urlopen(url + "/v3", timeout=5) as resp:  # noqa: S310
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"Keystone did not answer GET /v3:\n"
                                 f"{_tail(root / 'gunicorn.log')}\n{_tail(root / 'keystone.log')}")
            time.sleep(0.2)
        yield KeystonePeer(url, "admin", password, project_id, bindir, config)
    finally:
        _stop(gunicorn)
        _stop(memcached)
        if database is not None:
            drop_database(*database)
        shutil.rmtree(root, ignore_errors=True)
