"""A private, throwaway Ceph RADOS cluster for tests of the RADOS block store.

``CephCluster`` builds a single-host cluster by hand from Debian's Ceph 16.2
("pacific") packages, without systemd, cephadm or ceph-volume: one monitor,
optionally one manager, and one or more bluestore OSDs on sparse files, all
under one fresh directory (``/var/tmp/snfd-ceph-*``).  Every daemon runs in
the root network namespace, bound only to 127.0.0.1, msgr v2 only, on ports
picked free at start (a monitor port and a range for the OSDs and the
manager in 19000-19999, never the 3300/6800 defaults), so several clusters
and a developer's own Ceph can run side by side.  Pools are replicated with
size 1 by default; cephx stays on.  ``conf`` names the keyring, so
``rados.Rados(conffile=cluster.conf)`` is all a client needs.

Most tests should use ``shared_cluster()``: one cluster per test process,
started on first use and stopped at exit; a test isolates itself with its
own pool (``create_pool``/``delete_pool``) or a RADOS namespace.  Tests that
kill or restart daemons start a ``CephCluster`` of their own.

Measured on the project machine (2 shared cores, Debian 12, Ceph 16.2.15,
other services running), each until every PG is active+clean:
``start()`` with 1 OSD 1.7-1.9 s, 3 OSDs 1.8-2.2 s, 1 OSD and the manager
2.8 s; ``create_pool`` 0.1-0.3 s (3 OSDs: 1.0-1.4 s); ``kill_osd`` with
SIGKILL, ``start_osd`` and ``wait_active_clean`` 0.9-1.3 s together;
``stop()`` 0.2-0.4 s.  RSS: mon 40-50 MB, OSD 50 MB idle (300-500 MB after
bulk I/O; ``osd memory target`` is 1 GiB), manager 300 MB, which is why it
is off by default: RADOS I/O does not need it.  Idle CPU is negligible.

Things that were not obvious:

* A client that was connected before an OSD restart must call
  ``client.wait_for_latest_osdmap()`` after ``wait_active_clean``: librados
  learns of new OSD maps lazily, so its first op to the restarted OSD goes
  to the dead instance's address and stalls for 12-13 s until librados
  gives up on it and fetches the map.  (The harness does the same for its
  own admin client, which otherwise took 2.5 s per poll.)
* Without a manager the monitor knows nothing of PG states (``ceph pg
  stat`` is served by the manager), and even the manager is no judge: with
  the only OSD killed by SIGKILL it went on reporting 9/9 PGs active+clean
  and the monitor 1 OSD up (nobody is left to notice the death), and after
  the restart it reported them stale+active+clean for more than 1.5 s
  while the OSD had them clean.  ``wait_active_clean`` therefore asks each
  OSD itself (``dump_pgstate_history``: the primary's state machine) and
  requires every PG of every pool to be ``Active/Clean`` on its primary,
  on two polls in a row; every OSD process to be running, up, in and on
  the monitor's newest OSD map (an OSD too learns of maps lazily: it is
  told to fetch the newest); and every restarted OSD to have booted after
  its restart (``up_from``).
* Two settings cut the bring-up from 7 s to under 2 s and an OSD restart
  from 4-5 s to 0.8 s: ``bdev aio poll ms = 20`` (a bluestore OSD opens and
  closes its block file once per op shard at start, and each close waits
  for the idle aio thread's 250 ms poll) and ``paxos propose interval =
  0.05`` (the monitor otherwise batches map changes, such as a boot or a
  new pool, for 1 s).
* The daemons run in the foreground (``-f``) as children of the test
  process, each in a session of its own, so they are waited for (no
  zombies; PID 1 here is no init) and an exit is seen at once.  ``stop()``
  signals those children and whatever a pid file of the cluster names, but
  only processes whose command line names this cluster's conf.  A test
  process killed by SIGKILL leaves its daemons running (find them with the
  pid files under ``/var/tmp/snfd-ceph-*/run``).
* OSDs stop before the monitor: an OSD told to stop with the monitor
  already gone waits for it (still running 4 s later); with the monitor up
  it exits in 0.1 s.
* Logs, pid files and admin sockets are configured for the daemons only;
  in ``[global]`` every client (the harness's and the test's own
  ``rados.Rados``) would write ``client.admin.log`` and fight over one
  ``client.admin.asok``.
* ``osd pool default min size = 1``: a pool of size 3 keeps taking writes
  with one OSD down.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: The programs every cluster needs (Debian ``ceph-mon``, ``ceph-osd`` and
#: ``ceph-common``); ``ceph-mgr`` only for ``start(mgr=True)``.
TOOLS = ("ceph-mon", "ceph-osd", "ceph-authtool", "monmaptool")

#: Debian's binding (``python3-rados``); a venv of the same CPython 3.11 can
#: load it through a symlink in its site-packages.
DEBIAN_BINDING = "/usr/lib/python3/dist-packages/rados.cpython-311-x86_64-linux-gnu.so"

#: Where the clusters live, one private ``snfd-ceph-*`` directory each (made
#: by ``mkdtemp``, mode 0700).  Not ``/tmp``, which may be a tmpfs: the OSDs'
#: block files would fill RAM.  Keep it short: admin sockets live inside,
#: and a Unix socket's path is at most 107 bytes.
STATE_DIR = Path(os.environ.get("SNFD_CEPH_DIR", "/var/tmp"))  # noqa: S108

#: The application tag ``create_pool`` puts on pools.
APPLICATION = "synnefo"

_PORT_RANGE = (19000, 20000)
_GiB = 1024 ** 3
#: The state a PG's primary is in when the PG is active+clean.
_CLEAN = "Started/Primary/Active/Clean"
_POLL = 0.2


def ceph_unavailable() -> str | None:
    """Why a ``CephCluster`` cannot run here (a reason to skip), or None."""
    if os.geteuid() != 0:
        return "a private Ceph cluster needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return (f"Ceph is not installed (missing: {', '.join(missing)});"
                " apt-get install ceph-mon ceph-osd ceph-common python3-rados"
                " to run these tests")
    try:
        import rados  # noqa: F401
    except ImportError as e:
        platlib = sysconfig.get_paths()["platlib"]
        return (f"the Ceph binding 'rados' is not importable ({e}); apt-get install"
                f" python3-rados, then ln -sf {DEBIAN_BINDING} {platlib}/")
    return None


class CephCluster:
    """One private Ceph cluster on 127.0.0.1: a monitor (``mon.a``), OSDs
    ``osd.0`` to ``osd.<n-1>`` and optionally a manager (``mgr.x``).

    Every method blocks (subprocesses, polling); call them from
    ``setUp``/cleanups or through ``deferToThread`` while a reactor runs,
    and from one thread at a time.

    @param start_timeout: seconds ``start``, ``start_osd`` and
        ``create_pool`` may take before they give up.
    @param stop_timeout: seconds a daemon has to exit after SIGTERM before
        it gets SIGKILL.
    @param block_size: apparent size of each OSD's sparse block file.
    @param settings: extra ``ceph.conf`` options for ``[global]``
        (``{"osd op complaint time": "5"}``), written after ours.
    """

    def __init__(self, start_timeout: float = 120.0, stop_timeout: float = 15.0,
                 block_size: int = 4 * _GiB,
                 settings: Mapping[str, str] | None = None) -> None:
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.block_size = block_size
        self.settings = dict(settings or {})
        #: the cluster's directory while it exists
        self.base: Path | None = None
        #: the number of OSDs
        self.osds = 0
        self.mon_port: int | None = None
        #: the port range of the OSDs and the manager
        self.ports: range | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        # Per OSD: the osdmap epoch it must have booted after to count as up.
        self._boot_after: dict[int, int] = {}
        self._admin: Any = None

    @property
    def conf(self) -> str:
        """The path of ``ceph.conf``; it names the admin keyring."""
        return str(self._base / "ceph.conf")

    @property
    def started(self) -> bool:
        """Whether ``start`` was called and ``stop`` was not."""
        return self.base is not None

    def start(self, osds: int = 1, mgr: bool = False) -> None:
        """Create the cluster and return once every PG is active+clean.

        @param osds: how many bluestore OSDs (set up in parallel).
        @param mgr: also run a manager (300 MB; only ``ceph pg``/``ceph
            df``-style commands need it, not RADOS I/O).  No manager
            module listening on a port is enabled.
        @raise RuntimeError: when Ceph is unavailable (see
            ``ceph_unavailable``), or a daemon failed or was not ready within
            ``start_timeout``; the message ends with its log.  Everything
            started is stopped and removed in that case.
        """
        if self.base is not None:
            raise RuntimeError(f"this cluster was already started ({self.base})")
        if osds < 1:
            raise ValueError("a cluster needs at least one OSD")
        reason = ceph_unavailable()
        if reason is None and mgr and shutil.which("ceph-mgr") is None:
            reason = "ceph-mgr is not installed; apt-get install ceph-mgr"
        if reason is not None:
            raise RuntimeError(reason)
        atexit.register(self.stop)
        try:
            self._prepare(osds)
            self._spawn("mon.a")
            self._await_mon()
            if mgr:
                (self._base / "mgr.x").mkdir()
                self._spawn("mgr.x")
            self._create_osds(osds)
            self.wait_active_clean(self.start_timeout)
            if mgr:
                self._await(self._no_mgr, self.start_timeout, "the manager did not start")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every daemon of this cluster and remove its directory.

        OSDs first, then the manager, then the monitor; each gets SIGTERM
        and, after ``stop_timeout`` seconds, SIGKILL.  Idempotent; safe to
        call when ``start`` failed half-way.  Clients the caller opened
        should be shut down first.
        """
        atexit.unregister(self.stop)
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.shutdown()
            except Exception:
                pass
        if self.base is None:
            return
        survivors = []
        for kind in ("osd", "mgr", "mon"):
            survivors += self._stop_daemons(kind)
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
        self._procs.clear()
        self._boot_after.clear()
        self.osds = 0
        self.mon_port = self.ports = None
        if survivors:
            raise RuntimeError(f"Ceph processes {survivors} survived SIGKILL")

    def pids(self) -> list[int]:
        """The processes of this cluster that are alive: children of ours and
        those its pid files name (if their command line names ``conf``)."""
        if self.base is None:
            return []
        return sorted(pid for kind in ("osd", "mgr", "mon")
                      for pid in self._daemons(kind))

    def mon_command(self, prefix: str, **args: Any) -> Any:
        """Run a monitor command (``ceph <prefix> ...``) as client.admin.

        @return: its JSON output, decoded, or None when it has none.
        @raise RuntimeError: when the command fails.
        """
        return self._command("mon", prefix, args)

    def create_pool(self, name: str, size: int = 1, pg_num: int = 8) -> None:
        """Create a replicated pool of ``size`` copies, tagged with
        application ``synnefo``; return once its PGs are active+clean.

        Its ``min_size`` stays 1: writes go on while one copy is up.
        """
        if size > self.osds:
            raise ValueError(f"size {size} needs at least {size} OSDs, not {self.osds}")
        self.mon_command("osd pool create", pool=name, pg_num=pg_num, pgp_num=pg_num,
                         pool_type="replicated")
        if size != 1:
            self.mon_command("osd pool set", pool=name, var="size", val=str(size))
        self.mon_command("osd pool application enable", pool=name, app=APPLICATION)
        self.wait_active_clean(self.start_timeout)

    def delete_pool(self, name: str) -> None:
        """Delete a pool and its objects (no error if it does not exist)."""
        self.mon_command("osd pool delete", pool=name, pool2=name,
                         yes_i_really_really_mean_it=True)

    def kill_osd(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to ``osd.<i>``.

        For SIGKILL, SIGTERM and SIGINT wait until it exited, so that
        ``start_osd`` may follow; other signals (SIGSTOP, SIGCONT) return
        at once.  The monitor is not told: after a SIGKILL it goes on
        thinking the OSD is up until ``start_osd`` boots a new one.
        """
        proc = self._procs.get(f"osd.{i}")
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"osd.{i} is not running")
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            proc.wait(self.stop_timeout + 30)

    def start_osd(self, i: int) -> None:
        """Start ``osd.<i>`` again (same data) and return once the monitor
        has it up, booted after this call.  Its PGs may still be peering:
        ``wait_active_clean`` waits for them."""
        name = f"osd.{i}"
        if not 0 <= i < self.osds:
            raise ValueError(f"there is no {name}")
        proc = self._procs.get(name)
        if proc is not None and proc.poll() is None:
            raise RuntimeError(f"{name} is already running")
        self._boot_after[i] = self.mon_command("osd dump")["epoch"]
        self._spawn(name)
        self._await(lambda: self._osds_down(only=i), self.start_timeout,
                    f"{name} did not boot")

    def wait_active_clean(self, timeout: float = 120.0) -> None:
        """Return once every OSD is up and in and every PG of every pool is
        active+clean, as the OSDs themselves see it.

        @raise RuntimeError: after ``timeout`` seconds, or at once when an
            OSD process is not running.
        """
        confirmed = 0

        def problem() -> str | None:
            # Twice in a row: an OSD that just took a new map may show a PG
            # as Clean for a moment before it re-peers on that map.
            nonlocal confirmed
            why = self._not_clean()
            confirmed = 0 if why is not None else confirmed + 1
            return "active+clean once, checking again" if confirmed == 1 else why

        self._await(problem, timeout, "the cluster is not active+clean")

    # -- internals ---------------------------------------------------------

    @property
    def _base(self) -> Path:
        if self.base is None:
            raise RuntimeError("the Ceph cluster is not started")
        return self.base

    def _prepare(self, osds: int) -> None:
        base = self.base = Path(tempfile.mkdtemp(prefix="snfd-ceph-", dir=STATE_DIR))
        if len(os.fsencode(base / "run" / f"osd.{osds - 1}.asok")) > 107:
            raise RuntimeError(f"{base} is too long a path for the daemons' admin"
                               " sockets; set SNFD_CEPH_DIR to a shorter one")
        for sub in ("run", "log", "crash"):
            (base / sub).mkdir()
        self.mon_port, self.ports = _free_ports(16 + 4 * osds)
        fsid = str(uuid.uuid4())
        mon_addr = f"[v2:127.0.0.1:{self.mon_port}]"
        settings = {
            "fsid": fsid,
            "mon host": mon_addr,
            "public addr": "127.0.0.1",
            "cluster addr": "127.0.0.1",
            "ms bind ipv4": "true",
            "ms bind ipv6": "false",
            "ms bind msgr1": "false",
            "ms bind port min": str(self.ports.start),
            "ms bind port max": str(self.ports.stop - 1),
            "auth cluster required": "cephx",
            "auth service required": "cephx",
            "auth client required": "cephx",
            "auth allow insecure global id reclaim": "false",
            "keyring": f"{base}/keyring",
            "run dir": f"{base}/run",
            "crash dir": f"{base}/crash",
            "osd pool default size": "1",
            "osd pool default min size": "1",
            "osd pool default pg num": "8",
            "osd pool default pgp num": "8",
            "osd pool default pg autoscale mode": "off",
            "osd crush chooseleaf type": "0",
            "mon allow pool size one": "true",
            "mon allow pool delete": "true",
            "mon warn on pool no redundancy": "false",
            "mon max pg per osd": "1000",
            # The always-on modules listen on no port; add none that do.
            "mgr initial modules": "iostat",
            # Publish map changes (OSD boots, new pools) at once, not in 1 s batches.
            "paxos propose interval": "0.05",
            # Each OSD start opens and closes the block file once per shard.
            "bdev aio poll ms": "20",
            **self.settings,
        }
        (base / "ceph.conf").write_text(
            "[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
            + _daemon_section(base, "mon")
            + f"mon cluster log file = {base}/log/cluster.log\n"
            # The default (30 % free) would warn on a full developer disk.
            + "mon data avail warn = 5\n"
            + _daemon_section(base, "mgr")
            + _daemon_section(base, "osd")
            + "osd objectstore = bluestore\n"
            + f"osd memory target = {_GiB}\n"
            + "bluestore block create = true\n"
            + f"bluestore block size = {self.block_size}\n"
            + "bluestore fsck on mount = false\n")
        keyring = str(base / "keyring")
        # Every key, with its caps, in one keyring that ceph-mon --mkfs imports.
        keys = {
            "mon.": {"mon": "allow *"},
            "client.admin": {"mon": "allow *", "osd": "allow *", "mgr": "allow *",
                             "mds": "allow *"},
            "mgr.x": {"mon": "allow profile mgr", "osd": "allow *", "mds": "allow *"},
        }
        for i in range(osds):
            keys[f"osd.{i}"] = {"mon": "allow profile osd", "mgr": "allow profile osd",
                                "osd": "allow *"}
        for n, (name, caps) in enumerate(keys.items()):
            self._run("ceph-authtool", *(["--create-keyring"] if n == 0 else []), keyring,
                      "--gen-key", "-n", name,
                      *[arg for kind, cap in caps.items() for arg in ("--cap", kind, cap)])
        monmap = str(base / "monmap")
        self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a", mon_addr, monmap)
        self._run("ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", monmap,
                  "--keyring", keyring)

    def _run(self, *argv: str) -> None:
        result = subprocess.run(argv, cwd=self._base, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                timeout=self.start_timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n"
                               + result.stdout.decode(errors="replace"))

    def _spawn(self, name: str) -> None:
        """Start daemon ``name`` (``osd.0``) in the foreground, as our child
        in a session of its own, its output appended to ``log/<name>.out``."""
        kind, ident = name.split(".")
        with open(self._base / "log" / f"{name}.out", "ab") as out:
            self._procs[name] = subprocess.Popen(
                [f"ceph-{kind}", "-c", self.conf, "-i", ident, "-f"],
                cwd=self._base, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    def _await_mon(self) -> None:
        import rados

        port = self.mon_port
        assert port is not None
        self._await(lambda: self._exited("mon.a") or (
            None if _listening(port) else f"nothing listens on {port}"),
            self.start_timeout, "the monitor did not start")
        admin = rados.Rados(conffile=self.conf)
        admin.connect(timeout=int(self.start_timeout))
        self._admin = admin

    def _create_osds(self, osds: int) -> None:
        ids = {}
        for i in range(osds):
            ids[i] = str(uuid.uuid4())
            (self._base / f"osd.{i}").mkdir()
            self.mon_command("osd new", uuid=ids[i], id=i)
        # ceph-osd --mkfs takes 1-2 s (bluestore and rocksdb set-up): run them together.
        mkfs = {}
        for i, osd_uuid in ids.items():
            with open(self._base / "log" / f"osd.{i}.mkfs", "wb") as out:
                mkfs[i] = subprocess.Popen(
                    ["ceph-osd", "-c", self.conf, "-i", str(i), "--mkfs",
                     "--osd-uuid", osd_uuid],
                    cwd=self._base, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True)
        failed = []
        for i, proc in mkfs.items():
            try:
                code = proc.wait(self.start_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if code != 0:
                failed.append(i)
        if failed:
            raise RuntimeError(
                f"ceph-osd --mkfs failed for osd {failed}:\n"
                + self._log_tail(f"osd.{failed[0]}", ("mkfs", "log")))
        self.osds = osds
        for i in range(osds):
            self._spawn(f"osd.{i}")

    def _command(self, target: str, prefix: str, args: Mapping[str, Any],
                 osd: int = 0, timeout: float = 60) -> Any:
        if self._admin is None:
            raise RuntimeError("the Ceph cluster is not started")
        cmd = json.dumps({"prefix": prefix, **args, "format": "json"})
        if target == "mon":
            ret, out, status = self._admin.mon_command(cmd, b"", timeout=int(timeout))
        else:
            ret, out, status = self._admin.osd_command(osd, cmd, b"", timeout=int(timeout))
        if ret != 0:
            where = "" if target == "mon" else f" on osd.{osd}"
            raise RuntimeError(f"ceph {prefix}{where} failed: {os.strerror(-ret)}"
                               f" ({ret}) {status}")
        return json.loads(out) if out.strip() else None

    def _await(self, problem, timeout: float, what: str) -> None:
        """Poll ``problem()`` (a reason not to be ready, or None) until it
        returns None; raise ``RuntimeError(what ...)`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            why = problem()
            if why is None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} within {timeout} s: {why}")
            time.sleep(_POLL)

    def _exited(self, name: str) -> str | None:
        """Raise when daemon ``name`` is not running (with its log)."""
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            code = "never started" if proc is None else f"exit status {proc.returncode}"
            raise RuntimeError(f"{name} is not running ({code}):\n" + self._log_tail(name))
        return None

    def _no_mgr(self) -> str | None:
        self._exited("mgr.x")
        return None if self.mon_command("mgr stat")["available"] else "no active manager"

    def _osds_down(self, only: int | None = None) -> str | None:
        """Why some OSD (or only ``osd.<only>``) is not up and in yet, or
        None; raises when its process is gone."""
        wanted = range(self.osds) if only is None else [only]
        for i in wanted:
            self._exited(f"osd.{i}")
        epoch_osds = {o["osd"]: o for o in self.mon_command("osd dump")["osds"]}
        for i in wanted:
            o = epoch_osds.get(i)
            if o is None or not o["up"] or not o["in"]:
                return f"osd.{i} is not up and in"
            if o["up_from"] <= self._boot_after.get(i, 0):
                return f"osd.{i} is up only as its previous instance"
        return None

    def _not_clean(self) -> str | None:
        import rados

        why = self._osds_down()
        if why is not None:
            return why
        dump = self.mon_command("osd dump")
        epoch = dump["epoch"]
        pgs = {f"{pool['pool']}.{ps:x}" for pool in dump["pools"]
               for ps in range(pool["pg_num"])}
        try:
            # Else a command to a restarted OSD goes to its dead predecessor
            # until librados gives up on that (seconds).
            self._admin.wait_for_latest_osdmap()
        except rados.Error as e:
            return str(e)
        for i in range(self.osds):
            try:
                status = self._command("osd", "status", {}, osd=i, timeout=5)
                if status["state"] != "active":
                    return f"osd.{i} is {status['state']}"
                if status["newest_map"] < epoch:
                    # An OSD learns of maps lazily too; PG states on an old
                    # map may be stale.  Have it fetch the newest.
                    self._command("osd", "get_latest_osdmap", {}, osd=i, timeout=5)
                    return f"osd.{i} is at map {status['newest_map']}, not {epoch}"
                history = self._command("osd", "dump_pgstate_history", {}, osd=i, timeout=5)
            except (RuntimeError, rados.Error) as e:
                return str(e)
            pgs -= {pg["pg"] for pg in history["pgs"] if pg.get("currently") == _CLEAN}
        if pgs:
            return f"{len(pgs)} PGs are not active+clean: {', '.join(sorted(pgs)[:8])}"
        return None

    def _daemons(self, kind: str) -> dict[int, subprocess.Popen[bytes] | None]:
        """The live processes of ``kind`` (``osd``): our children (with
        their ``Popen``) and, to be safe, what this cluster's pid files
        name, if their command line names our conf."""
        found: dict[int, subprocess.Popen[bytes] | None] = {
            proc.pid: proc for name, proc in self._procs.items()
            if name.startswith(kind + ".") and proc.poll() is None}
        for pidfile in (self._base / "run").glob(f"{kind}.*.pid"):
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
            if pid not in found and _runs_conf(pid, self.conf):
                found[pid] = None
        return found

    def _stop_daemons(self, kind: str) -> list[int]:
        """SIGTERM every daemon of ``kind``, SIGKILL those left after
        ``stop_timeout``, and wait until they are gone; return the pids of
        any that are not (none, short of a process stuck in the kernel)."""
        daemons = self._daemons(kind)
        for sig, wait in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 10.0)):
            for pid in daemons:
                _signal(pid, sig)
                if sig == signal.SIGTERM:
                    _signal(pid, signal.SIGCONT)  # in case a test stopped it
            deadline = time.monotonic() + wait
            while daemons and time.monotonic() < deadline:
                daemons = {pid: proc for pid, proc in daemons.items()
                           if _alive(pid, proc, self.conf)}
                if daemons:
                    time.sleep(0.05)
            if not daemons:
                return []
        return sorted(daemons)

    def _log_tail(self, name: str, suffixes: Iterable[str] = ("out", "log"),
                  lines: int = 30) -> str:
        if self.base is None:
            return ""
        text = []
        for suffix in suffixes:
            path = self.base / "log" / f"{name}.{suffix}"
            try:
                content = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            text.append(f"--- {path}")
            text.extend(content[-lines:])
        return "\n".join(text)


def _daemon_section(base: Path, kind: str) -> str:
    """The start of ``ceph.conf``'s section for daemons of ``kind``: where
    their data, admin socket, pid file and log are (clients get none)."""
    return (f"[{kind}]\n"
            f"{kind} data = {base}/$name\n"
            f"admin socket = {base}/run/$name.asok\n"
            f"pid file = {base}/run/$name.pid\n"
            f"log file = {base}/log/$name.log\n")


_shared: CephCluster | None = None
_shared_error: str | None = None
_shared_lock = threading.Lock()


def shared_cluster() -> CephCluster:
    """The test process's shared cluster (1 OSD, no manager), started on
    first use and stopped when the process exits.

    Tests must not stop it or kill its daemons; each uses a pool of its own
    (``create_pool``, removed with ``delete_pool``) or a RADOS namespace.
    Check ``ceph_unavailable()`` first (and skip).

    @raise RuntimeError: when it cannot start; later calls raise the same
        error at once rather than trying again.
    """
    global _shared, _shared_error
    with _shared_lock:
        if _shared_error is not None:
            raise RuntimeError(f"the shared Ceph cluster did not start: {_shared_error}")
        if _shared is None or not _shared.started:
            cluster = CephCluster()
            try:
                cluster.start()
            except Exception as e:
                _shared_error = str(e)
                raise
            _shared = cluster
        return _shared


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _free_ports(count: int) -> tuple[int, range]:
    """A block of ``count`` ports in 19000-19999 that are all free now: the
    monitor's port, and the range after it for the other daemons."""
    low, high = _PORT_RANGE
    blocks = list(range(low, high - count + 1, count))
    start = secrets.randbelow(len(blocks))
    for first in blocks[start:] + blocks[:start]:
        if all(_bindable(port) for port in range(first, first + count)):
            return first, range(first + 1, first + count)
    raise RuntimeError(f"no {count} free ports in a row in {low}-{high - 1}")


def _runs_conf(pid: int, conf: str) -> bool:
    """Whether process ``pid`` is alive and its command line names ``conf``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z" and os.fsencode(conf) in argv


def _alive(pid: int, proc: subprocess.Popen[bytes] | None, conf: str) -> bool:
    if proc is not None:
        return proc.poll() is None
    return _runs_conf(pid, conf)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
