"""Real Ganeti 3.0 clusters for tests, each in a network namespace of its own.

A ``RealGanetiCluster`` is a single-node Ganeti cluster (fake hypervisor,
diskless/file templates, the no-op OS ``noop+default``, iallocator
``hail-single``) brought up by ``tests/ganeti/ganeti-up.sh N`` inside netns
``gnt<N>`` and torn down by ``ganeti-down.sh N``.  The root namespace reaches
it only through a veth pair on 10.77.N.0/24; nothing is put on the
machine's outside interface.  See reference/ganeti.md Part A.

Bringing a cluster up needs root, ``ip`` with netns support, ``nsenter`` and
``unshare``, and Debian's ``ganeti`` package (installed on demand with
``apt-get --no-install-recommends``).  ``real_ganeti_unavailable`` says, in
a sentence fit for ``SkipTest``, why that is not possible here; set
``SNFD_TEST_REAL_GANETI=0`` to skip real-Ganeti tests on purpose.

``up`` takes about 6 s and ``down`` well under one; both block, so a test
calls them through ``twisted.internet.threads.deferToThread`` (trial never
calls ``setUpClass``: share one cluster between the tests of a module by
caching what they need, see tests/ganeti/test_contract.py).  A cluster that
is up when the process exits is torn down by an ``atexit`` hook, and one
left behind by a killed process is torn down by the next ``up`` that picks
a number.  ``gx`` runs a ``gnt-*`` command inside the cluster without
blocking the reactor.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet.utils import getProcessOutputAndValue

__all__ = ["SCRIPTS_DIR", "RealGanetiCluster", "RealGanetiError", "real_ganeti_unavailable"]

#: Where ganeti-up.sh / ganeti-down.sh live (``SNFD_GANETI_SCRIPTS`` overrides).
SCRIPTS_DIR = Path(os.environ.get(
    "SNFD_GANETI_SCRIPTS", Path(__file__).resolve().parents[2] / "tests" / "ganeti"))

#: Cluster numbers tried, highest first (hand-made clusters tend to use low ones).
NUMBERS = range(200, 99, -1)

_PICK_LOCK = "/run/lock/snfd-ganeti-pick.lock"
_OWNER_FILE = "snfd-test-owner"
_PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.DOTALL)
_APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]


class RealGanetiError(Exception):
    """A script or ``gnt-*`` command failed; the message holds its output."""


def _run(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)


def _ganeti_installed() -> bool:
    return shutil.which("dpkg") is not None and _run(["dpkg", "-s", "ganeti"]).returncode == 0


@functools.cache
def real_ganeti_unavailable() -> str | None:
    """Why a real Ganeti cluster cannot be brought up here, or None when it can.

    Checked in order: ``SNFD_TEST_REAL_GANETI=0``, Linux, root, the tools
    (``ip``, ``nsenter``, ``unshare``, ``curl``), network-namespace support,
    the scripts, and the ``ganeti`` package.  A missing package is installed
    here with ``apt-get --no-install-recommends`` (about 25 s, with one
    ``apt-get update`` retry); the answer is the reason if that fails.
    The result is computed once per process.
    """
    if os.environ.get("SNFD_TEST_REAL_GANETI", "1") == "0":
        return "real Ganeti tests disabled (SNFD_TEST_REAL_GANETI=0)"
    if not sys.platform.startswith("linux"):
        return f"real Ganeti needs Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return "real Ganeti needs root (network namespaces, Ganeti daemons)"
    for tool in ("ip", "nsenter", "unshare", "curl"):
        if shutil.which(tool) is None:
            return f"real Ganeti needs the {tool!r} command"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    if _run(["ip", "netns", "list"]).returncode != 0:
        return "'ip netns' does not work here"
    for script in ("ganeti-up.sh", "ganeti-down.sh"):
        if not os.access(SCRIPTS_DIR / script, os.X_OK):
            return f"{SCRIPTS_DIR / script} is missing or not executable"
    if not _ganeti_installed():
        if shutil.which("apt-get") is None:
            return "the ganeti package is not installed and there is no apt-get"
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = [*_APT, "install", "-y", "--no-install-recommends", "ganeti"]
        for step in (install, [*_APT, "update"], install):
            done = subprocess.run(step, capture_output=True, text=True, env=env, check=False,
                                  timeout=900, stdin=subprocess.DEVNULL)
            if done.returncode == 0 and _ganeti_installed():
                break
        if not _ganeti_installed():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            return f"apt-get could not install ganeti: {' '.join(tail) or 'unknown error'}"
    return None


def _netns_exists(name: str) -> bool:
    return any(line.split()[:1] == [name] for line in _run(["ip", "netns", "list"])
               .stdout.splitlines())


def _link_exists(name: str) -> bool:
    return _run(["ip", "link", "show", name]).returncode == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RealGanetiCluster:
    """One real single-node Ganeti cluster in netns ``gnt<N>``.

    ``number`` None picks the highest free N from 200 down: no
    ``/srv/gnt<N>``, no netns ``gnt<N>``, no link ``gnt<N>h``.  Clusters an
    earlier test process brought up and never tore down (their owner
    process is gone) are torn down while picking, so a killed run does not
    leak clusters into the next one.

    After ``up``: ``url`` (``https://10.77.N.2:5080``), ``username``,
    ``password`` (a write user), ``certificate`` (the RAPI certificate PEM,
    without the key; its names are the cluster's, so pin it with hostname
    verification off), ``queue_dir`` (the job queue, readable from the root
    namespace) and ``name`` (``cluster<N>.ganeti.test``).
    """

    username = "synnefo"
    password = "synnefopass"  # noqa: S105 - the test clusters' RAPI user

    def __init__(self, reactor: Any, number: int | None = None,
                 scripts_dir: Path | None = None):
        self.reactor = reactor
        self.scripts_dir = Path(scripts_dir or SCRIPTS_DIR)
        self._fixed_number = number
        self.number: int | None = number
        self.certificate = ""
        self.running = False

    # -- naming ----------------------------------------------------------
    def _require_number(self) -> int:
        if self.number is None:
            raise RealGanetiError("the cluster has no number yet; call up() first")
        return self.number

    @property
    def base(self) -> Path:
        """``/srv/gnt<N>``: everything this cluster keeps on disk."""
        return Path(f"/srv/gnt{self._require_number()}")

    @property
    def url(self) -> str:
        return f"https://10.77.{self._require_number()}.2:5080"

    @property
    def name(self) -> str:
        return f"cluster{self._require_number()}.ganeti.test"

    @property
    def node_name(self) -> str:
        return f"node{self._require_number()}.ganeti.test"

    @property
    def queue_dir(self) -> Path:
        return self.base / "lib" / "queue"

    # -- lifecycle -------------------------------------------------------
    def up(self) -> None:
        """Bring the cluster up (blocking, about 6 s).

        On failure the partial cluster is torn down and ``RealGanetiError``
        carries the script's output.
        """
        with open(_PICK_LOCK, "a") as lock:
            # Serialise picking + creating among test processes on this machine.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._fixed_number is None:
                self.number = self._pick()
            number = self._require_number()
            done = _run([str(self.scripts_dir / "ganeti-up.sh"), str(number)], timeout=900)
            if done.returncode != 0:
                self._down_quietly()
                raise RealGanetiError(
                    f"ganeti-up.sh {number} failed ({done.returncode}):\n"
                    f"{done.stdout}{done.stderr}")
            (self.base / _OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.running = True
        atexit.register(self._down_quietly)
        pem = (self.base / "lib" / "rapi.pem").read_text()
        match = _PEM_CERTIFICATE.search(pem)
        if match is None:
            self.down()
            raise RealGanetiError(f"{self.base}/lib/rapi.pem holds no certificate")
        self.certificate = match.group(0)

    def down(self) -> None:
        """Tear the cluster down (blocking, well under a second); idempotent."""
        if self.number is None:
            return
        done = _run([str(self.scripts_dir / "ganeti-down.sh"), str(self.number)])
        self.running = False
        atexit.unregister(self._down_quietly)
        if done.returncode != 0:
            raise RealGanetiError(
                f"ganeti-down.sh {self.number} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}")

    def _down_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.down()

    def _pick(self) -> int:
        for n in NUMBERS:
            owner = Path(f"/srv/gnt{n}") / _OWNER_FILE
            with contextlib.suppress(OSError, ValueError):
                if not _pid_alive(int(owner.read_text())):
                    _run([str(self.scripts_dir / "ganeti-down.sh"), str(n)])
            if (not Path(f"/srv/gnt{n}").exists() and not _netns_exists(f"gnt{n}")
                    and not _link_exists(f"gnt{n}h")):
                return n
        raise RealGanetiError(
            f"no free cluster number in {min(NUMBERS)}..{max(NUMBERS)}")

    # -- commands inside -------------------------------------------------
    async def gx(self, *args: str, check: bool = True) -> str:
        """Run ``args`` (e.g. ``"gnt-instance", "list"``) inside the cluster's
        namespaces without blocking the reactor; its stdout.

        Raises ``RealGanetiError`` with the output when it exits non-zero and
        ``check`` is true.
        """
        out, _ = await self._gx(args, check)
        return out

    async def submit(self, *args: str) -> int:
        """Run a ``gnt-*`` command with ``--submit`` inserted after its first
        two words; the job id it printed (``JobID: N`` on stderr, or
        ``N: <instance>`` on stdout for per-instance commands)."""
        out, err = await self._gx((*args[:2], "--submit", *args[2:]), True)
        match = re.search(r"JobID:\s*(\d+)|^(\d+):", err + "\n" + out, re.MULTILINE)
        if match is None:
            raise RealGanetiError(
                f"no JobID in the output of {' '.join(args)}: {out!r} {err!r}")
        return int(match.group(1) or match.group(2))

    async def _gx(self, args: tuple[str, ...], check: bool) -> tuple[str, str]:
        gx = str(self.base / "ns" / "gx")
        raw_out, raw_err, code = await getProcessOutputAndValue(
            gx, args, env=dict(os.environ), reactor=self.reactor)
        out = raw_out.decode("utf-8", "replace")
        err = raw_err.decode("utf-8", "replace")
        if check and code != 0:
            raise RealGanetiError(f"gx {' '.join(args)} exited {code}:\n{out}{err}")
        return out, err
