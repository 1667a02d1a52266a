"""A private, throwaway RabbitMQ node for integration tests.

``PrivateRabbit`` runs Debian's ``rabbitmq-server`` as a node of its own:
its own node name, data, logs, config, Erlang cookie and ports, all under
one temporary directory.  It never touches a system broker that may be
running on the same machine (``rabbit@<host>`` on 127.0.0.1:5672): the
only thing the two may share is the loopback ``epmd`` on 127.0.0.1:4369,
in which the private node registers under its own name.  When no epmd
listens there, a private epmd is started on a free port and killed again
by ``stop()``.

Measured on the project machine (2 cores, RabbitMQ 3.10.8, Erlang/OTP 25,
other jobs running): ``start()`` takes 5.7-9.4 s until an AMQP connection
succeeds, ``stop()`` 1.5-1.7 s (mostly ``rabbitmqctl`` booting its own
Erlang VM) and ``restart()`` 6-10.5 s.  So start a node only for tests
that must stop or restart the broker; the contract tests use the shared
one.
"""

from __future__ import annotations

import atexit
import errno
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SkipTest

#: Where Debian keeps the unwrapped server scripts.  The ``/usr/sbin``
#: wrappers are not used: as root they ``cd /var/lib/rabbitmq`` and send
#: the startup output to the system node's ``/var/log/rabbitmq`` files.
SCRIPTS_DIR = Path(os.environ.get("SNFD_RABBITMQ_SCRIPTS",
                                  "/usr/lib/rabbitmq/bin"))

_PORT_RANGE = (17000, 18000)
_SYSTEM_EPMD_PORT = 4369
_LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"


class PrivateRabbit:
    """One private RabbitMQ node on 127.0.0.1.

    ``start()``, ``stop()`` and ``restart()`` block; call them from
    ``setUp``/cleanups or through ``deferToThread`` while a reactor runs.
    ``url`` is valid once ``start()`` returned and stays the same across
    ``restart()`` (same port, same data directory, so durable exchanges,
    queues and persistent messages survive).

    @raise SkipTest: from the constructor when ``rabbitmq-server`` (or
        Erlang) is not installed.
    """

    def __init__(self, start_timeout: float = 60.0, *, cookie: str | None = None,
                 epmd_port: int | None = None) -> None:
        server = SCRIPTS_DIR / "rabbitmq-server"
        if not server.exists() or shutil.which("erl") is None:
            raise SkipTest(
                f"RabbitMQ is not installed ({server} or erl missing);"
                " apt-get install rabbitmq-server to run these tests")
        self.start_timeout = start_timeout
        self.nodename = (
            f"snfdtest-{os.getpid()}-{secrets.token_hex(3)}@localhost")
        self.port: int | None = None
        self.dist_port: int | None = None
        self.epmd_port: int | None = None
        self._private_epmd = False
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._user = _broker_user()
        #: The Erlang cookie (the nodes of a cluster share one) and the epmd
        #: they register with (``RabbitCluster``); None: the node's own.
        self.cookie = cookie
        self._given_epmd = epmd_port

    @property
    def url(self) -> str:
        """The AMQP URL of the node (guest/guest, default vhost)."""
        if self.port is None:
            raise RuntimeError("PrivateRabbit was not started")
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def pid(self) -> int | None:
        """The node's process group (its own session: the server script and
        the Erlang VM below it) while it runs, else None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the node's process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the node and return once it accepts AMQP connections.

        The first call creates the temporary directory and picks the
        ports; later calls (``restart``) reuse both.

        @raise RuntimeError: when the node exited or did not accept an AMQP
            connection within ``start_timeout`` seconds; the message ends
            with the tail of its log.  The node is stopped in that case.
        """
        if self.running:
            raise RuntimeError(f"{self.nodename} is already running")
        if self._base is None:
            self._prepare()
        assert self._base is not None
        with open(self._base / "log" / "console.log", "ab") as log:
            self._proc = subprocess.Popen(
                [str(SCRIPTS_DIR / "rabbitmq-server")],
                env=self._env(), cwd=self._base, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **self._user)
        atexit.register(self.stop)
        try:
            self._await_amqp()
        except BaseException:
            self._halt()
            raise

    def stop(self) -> None:
        """Stop the node, a private epmd, and remove every file.

        Idempotent; safe to call when ``start`` failed half-way.
        """
        atexit.unregister(self.stop)
        self._halt()
        if self._private_epmd and self.epmd_port is not None:
            self._kill_epmd()
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
        self.port = self.dist_port = self.epmd_port = None

    def restart(self) -> None:
        """Stop the node and start it again on the same port and data."""
        self._halt()
        self.start()

    def stop_node(self) -> None:
        """Stop only the node; ``start()`` brings it back on the same port
        and data.  For tests that keep the broker down for a while."""
        self._halt()

    def wipe(self) -> None:
        """Forget every exchange, queue and message (node stopped only):
        the next ``start()`` is a fresh broker on the same port."""
        if self.running:
            raise RuntimeError("stop the node before wiping its data")
        if self._base is not None:
            mnesia = self._base / "mnesia"
            shutil.rmtree(mnesia, ignore_errors=True)
            mnesia.mkdir()
            if self._user:
                os.chown(mnesia, self._user["user"], self._user["group"])

    # -- internals ---------------------------------------------------------

    def _prepare(self) -> None:
        base = Path(tempfile.mkdtemp(prefix="snfd-rabbit-"))
        self._base = base
        for sub in ("mnesia", "log"):
            (base / sub).mkdir()
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")
        (base / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\n"
            "log.console = false\n"
            "log.file.level = info\n")
        if self.cookie is not None:
            cookie = base / ".erlang.cookie"
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        if self._user:
            uid, gid = self._user["user"], self._user["group"]
            for path in [base, *base.rglob("*")]:
                os.chown(path, uid, gid)
        taken: set[int] = set()
        if self._given_epmd is not None:
            self.epmd_port, self._private_epmd = self._given_epmd, False
        elif _listening(_SYSTEM_EPMD_PORT):
            self.epmd_port, self._private_epmd = _SYSTEM_EPMD_PORT, False
        else:
            self.epmd_port, self._private_epmd = _free_port(taken), True
            taken.add(self.epmd_port)
        self.port = _free_port(taken)
        taken.add(self.port)
        self.dist_port = _free_port(taken)

    def _env(self) -> dict[str, str]:
        assert self._base is not None
        base = self._base
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            # The Erlang cookie lives in $HOME: a private one per node.
            "HOME": str(base),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": _LOOPBACK_DIST,
            "RABBITMQ_CTL_ERL_ARGS": _LOOPBACK_DIST,
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
        })
        return env

    def _await_amqp(self) -> None:
        import pika

        params = pika.ConnectionParameters(
            host="127.0.0.1", port=self.port,
            credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=1, socket_timeout=2, stack_timeout=5)
        assert self.port is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(
                    f"RabbitMQ node {self.nodename} exited during startup:\n"
                    + self._log_tail())
            if _listening(self.port):
                try:
                    pika.BlockingConnection(params).close()
                    return
                except pika.exceptions.AMQPError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"RabbitMQ node {self.nodename} did not accept AMQP on"
                    f" port {self.port} within {self.start_timeout} s:\n"
                    + self._log_tail())
            time.sleep(0.2)

    def _halt(self) -> None:
        """Stop the node process: ``rabbitmqctl stop``, then signals."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._ctl("stop", timeout=30)
            except (subprocess.SubprocessError, OSError):
                pass
            _wait_or_signal(proc)
        # A node that was killed leaves its port in TIME_WAIT at worst;
        # wait until it is really closed so restart can bind it again.
        deadline = time.monotonic() + 15
        while (self.port is not None and _listening(self.port)
               and time.monotonic() < deadline):
            time.sleep(0.1)

    def _ctl(self, *args: str, timeout: float) -> None:
        subprocess.run(
            [str(SCRIPTS_DIR / "rabbitmqctl"), "-n", self.nodename, *args],
            env=self._env(), cwd=self._base, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=timeout, check=False, **self._user)

    def _kill_epmd(self) -> None:
        epmd = shutil.which("epmd")
        if epmd is not None:
            env = {"PATH": os.environ.get("PATH", ""),
                   "ERL_EPMD_PORT": str(self.epmd_port),
                   "ERL_EPMD_ADDRESS": "127.0.0.1"}
            subprocess.run([epmd, "-kill"], env=env,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10,
                           check=False)
        deadline = time.monotonic() + 10
        while (self.epmd_port is not None and _listening(self.epmd_port)
               and time.monotonic() < deadline):
            time.sleep(0.1)

    def _log_tail(self, lines: int = 40) -> str:
        if self._base is None:
            return ""
        text = []
        for path in sorted((self._base / "log").glob("*.log")):
            try:
                content = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            text.append(f"--- {path.name}")
            text.extend(content[-lines:])
        return "\n".join(text)


class RabbitCluster:
    """``size`` private nodes joined in one RabbitMQ cluster (a shared
    cookie, one epmd), for tests and benchmarks of quorum queues and
    broker failures.  ``start`` and ``stop`` block.

    Measured here (3 nodes, 2 cores): the nodes start in parallel in about
    15 s and joining takes about 5 s more.
    """

    def __init__(self, size: int = 3, start_timeout: float = 120.0):
        self.cookie = secrets.token_hex(16).upper()
        self.size = size
        self.start_timeout = start_timeout
        self.nodes: list[PrivateRabbit] = []
        self._epmd: PrivateRabbit | None = None

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self) -> None:
        import threading

        try:
            first = PrivateRabbit(self.start_timeout, cookie=self.cookie)
            first.start()
            self.nodes.append(first)
            others = [PrivateRabbit(self.start_timeout, cookie=self.cookie,
                                    epmd_port=first.epmd_port)
                      for _ in range(self.size - 1)]
            self.nodes.extend(others)
            errors: list[BaseException] = []

            def start_one(node: PrivateRabbit) -> None:
                try:
                    node.start()
                except BaseException as e:
                    errors.append(e)
            threads = [threading.Thread(target=start_one, args=(n,)) for n in others]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            for node in others:
                for step in (["stop_app"], ["join_cluster", first.nodename], ["start_app"]):
                    node._ctl(*step, timeout=60)
                node._await_amqp()
        except BaseException:
            self.stop()
            raise

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (its whole process group)."""
        proc = self.nodes[index]._proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        self.nodes[index]._proc = None

    def restart(self, index: int) -> None:
        """Start node ``index`` again on its data (it rejoins the cluster)."""
        self.nodes[index].start()

    def stop(self) -> None:
        # The first node last: it may hold the private epmd the others use.
        for node in reversed(self.nodes):
            node.stop()
        self.nodes = []


def private_rabbit(testcase) -> PrivateRabbit:
    """Start a ``PrivateRabbit`` whose removal is a cleanup of ``testcase``.

    The cleanup runs whether the test passed or failed.  Raises
    ``SkipTest`` when RabbitMQ is not installed.
    """
    rabbit = PrivateRabbit()
    testcase.addCleanup(rabbit.stop)
    rabbit.start()
    return rabbit


def _broker_user() -> dict:
    """``Popen`` arguments that run the broker as ``rabbitmq`` when root.

    Erlang refuses nothing as root, but RabbitMQ's scripts assume they are
    not root; the Debian package runs it as ``rabbitmq`` and so do we.
    """
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("rabbitmq")
    except KeyError:
        return {}
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port(taken: set[int]) -> int:
    """A port in 17000-17999 that nothing listens on or is bound to."""
    candidates = list(range(*_PORT_RANGE))
    start = secrets.randbelow(len(candidates))
    for port in candidates[start:] + candidates[:start]:
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    continue
                raise
        return port
    raise RuntimeError("no free port in 17000-17999")


def _wait_or_signal(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the node's shell to exit, escalating TERM, then KILL.

    The signals go to the process group the node was started in (its own
    session), so the Erlang VM below the shell receives them too.
    """
    for sig, wait in ((None, 30), (signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if sig is not None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # The VM may outlive the shell for a moment after KILL of the group.
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return
    time.sleep(0.5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
