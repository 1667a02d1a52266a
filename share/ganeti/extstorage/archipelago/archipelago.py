#!/usr/bin/python3 -I
"""Ganeti ExtStorage provider ``archipelago``: snfd's thin volumes as block devices.

Every action file of this directory (``create attach detach remove grow
setinfo verify snapshot open close``) is a small wrapper that runs
``main(<its own name>)`` here.  Ganeti runs them as root, in the provider
directory, with the volume in ``VOL_*`` and the disk's parameters in
``EXTP_*`` (see docs/archipelago.md, "ExtStorage provider").

The volume (a "map") lives on an snfd node with the ``archip`` plugin;
this program asks the node, over HTTP with a component token, to make,
grow, snapshot and delete it, and attaches it as a block device: the
node's NBD export of the map becomes one file through ``nbdfuse``, and a
loop device over that file is what ``attach`` prints.  (Where the kernel
has NBD, ``/sys/block/nbd0``, ``nbd-client`` could attach the export
directly; the machines snfd is tested on have no kernel NBD, so this is
the one path, and the one tested.)

Configuration: ``archipelago.conf`` beside this file, JSON, readable by
root only::

    {"url": "http://<node>:<port>", "token": "<component token>",
     "nbd_host": "<optional: overrides the address the node advertises>",
     "nbd_port": <optional>, "run_dir": "/run/snfd-archipelago",
     "timeout": 30,
     "nbd_tls_certificates": "<optional: a directory holding ca-cert.pem, the
                              CA of the node's certificate, for a node whose
                              NBD server requires TLS (nbds://)>"}

What an attachment leaves under ``run_dir`` (also read by the test
clusters' ganeti-down.sh, which releases what is left)::

    <map>/mnt/disk       the FUSE file (nbdfuse's mount point is <map>/mnt)
    <map>/nbdfuse.pid    nbdfuse's pid, written by nbdfuse once it serves
    <map>/nbdfuse.log    nbdfuse's output
    <map>/loop           the loop device over mnt/disk (written last)
    .locks/<map>         flock serialising the actions on one map
    .names/<VOL_NAME>    the map of a Ganeti volume whose disk has a name
                         (snapshot runs without VOL_CNAME)

Only the first line of ``attach``'s stdout is read by Ganeti (the device;
further lines would be taken as userspace URIs), so everything else goes
to stderr, which Ganeti logs.  Errors end an action with one line on
stderr and status 1.  Standard library only: Ganeti runs this with
``/usr/bin/python3`` and noded's environment (``-I`` keeps a stray
``PYTHONPATH`` out).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

CONF_NAME = "archipelago.conf"
API = "/archip/v1"
MiB = 1024 * 1024
DEFAULT_RUN_DIR = "/run/snfd-archipelago"
DEFAULT_TIMEOUT = 30.0
#: Seconds nbdfuse may take to connect and mount, and to exit once unmounted.
NBDFUSE_START = 15.0
NBDFUSE_EXIT = 10.0
#: The commands' search path (noded's own PATH may be anything).
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: A map's name: what snfd.archip.volumes accepts (its length the node checks).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Failure(Exception):
    """Ends the action with status 1 and this one-line message."""


def log(message: str) -> None:
    print(f"archipelago: {message}", file=sys.stderr, flush=True)


# -- configuration ------------------------------------------------------------


class Config:
    """``archipelago.conf``, checked."""

    def __init__(self, data: Mapping[str, Any], path: str):
        def fail(why: str) -> Failure:
            return Failure(f"{path}: {why}")

        url = data.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise fail('"url" must be the node\'s http:// or https:// base URL')
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise fail('"token" must be the component token')
        nbd_host = data.get("nbd_host")
        if nbd_host is not None and (not isinstance(nbd_host, str) or not nbd_host):
            raise fail('"nbd_host" must be a host name or address')
        nbd_port = data.get("nbd_port")
        if nbd_port is not None and (not isinstance(nbd_port, int) or not 0 < nbd_port < 65536):
            raise fail('"nbd_port" must be a TCP port')
        run_dir = data.get("run_dir", DEFAULT_RUN_DIR)
        if not isinstance(run_dir, str) or not os.path.isabs(run_dir):
            raise fail('"run_dir" must be an absolute path')
        timeout = data.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise fail('"timeout" must be a positive number of seconds')
        self.path = path
        self.url = url.rstrip("/")
        self.token = token
        nbd_pki = data.get("nbd_tls_certificates")
        if nbd_pki is not None and (not isinstance(nbd_pki, str) or not os.path.isabs(nbd_pki)):
            raise fail('"nbd_tls_certificates" must be the absolute path of a directory'
                       ' holding ca-cert.pem')
        self.nbd_host = nbd_host
        self.nbd_port = nbd_port
        self.nbd_pki = nbd_pki
        self.run_dir = os.path.normpath(run_dir)
        self.timeout = float(timeout)

    @classmethod
    def load(cls, directory: str) -> Config:
        path = os.path.join(directory, CONF_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise Failure(f"cannot read {path}: {e.strerror}") from None
        except ValueError as e:
            raise Failure(f"{path} is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise Failure(f"{path} must hold a JSON object")
        return cls(data, path)


# -- the node's HTTP API --------------------------------------------------------


def _message(body: Any) -> str:
    """The message of an error body (any fault style), else its text."""
    if isinstance(body, dict):
        if isinstance(body.get("message"), str):
            return str(body["message"])
        for value in body.values():
            found = _message(value)
            if found:
                return found
        return ""
    return body.strip()[:200] if isinstance(body, str) else ""


class Node:
    """The snfd node's volume API (``/archip/v1``)."""

    def __init__(self, config: Config):
        self.config = config
        # No proxy: noded's environment may name one, and the node is local.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None,
             ok: tuple[int, ...] = (200,)) -> tuple[int, Any]:
        """``method`` on ``/archip/v1<path>``: the status (one of ``ok``,
        else ``Failure`` with the node's message) and the parsed answer."""
        url = self.config.url + API + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"X-Auth-Token": self.config.token, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.config.timeout) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise Failure(f"{method} {url}: the node did not answer: {reason}") from None
        text = raw.decode("utf-8", "replace")
        try:
            parsed: Any = json.loads(text) if text else None
        except ValueError:
            parsed = text
        if status not in ok:
            message = _message(parsed) or "no message"
            raise Failure(f"{method} {API}{path}: {status} {message}")
        return status, parsed

    def nbd_address(self) -> tuple[str, int]:
        """Where the node's NBD server listens (the config may override)."""
        host, port, _ = self.nbd_server()
        return host, port

    def nbd_server(self) -> tuple[str, int, bool]:
        """Where the node's NBD server listens, and whether it requires
        TLS."""
        _, info = self.call("GET", "")
        nbd = info.get("nbd") if isinstance(info, dict) else None
        host = self.config.nbd_host or (nbd or {}).get("host")
        port = self.config.nbd_port or (nbd or {}).get("port")
        if not isinstance(host, str) or not host or not isinstance(port, int):
            raise Failure(f"GET {API}: the node names no NBD server: {info!r}")
        return host, port, bool((nbd or {}).get("tls"))


# -- processes and devices ----------------------------------------------------------


def _run(argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = {"PATH": PATH, "LC_ALL": "C"}
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=env, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise Failure(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise Failure(f"{' '.join(argv)} took over {timeout:g} s") from None


def _which(command: str) -> str:
    for directory in PATH.split(":"):
        candidate = os.path.join(directory, command)
        if os.access(candidate, os.X_OK):
            return candidate
    raise Failure(f"{command} is not installed (Debian: libnbd-bin, fuse3, mount)")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return ""


def _write_atomically(path: str, text: str) -> None:
    temporary = f"{path}.new"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(temporary, path)


def _alive(pid: int, command: str) -> bool:
    """Whether process ``pid`` runs ``command`` and has not exited."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read()
    except OSError:
        return False
    name = fields[fields.find("(") + 1:fields.rfind(")")]
    state = fields[fields.rfind(")") + 2:][:1]
    return name == command[:15] and state not in ("Z", "X")


def _pid_of(path: str, command: str) -> int | None:
    """The pid in ``path`` when that process lives and runs ``command``
    (a pid file may outlive its process, and the pid be reused)."""
    try:
        pid = int(_read(path))
    except ValueError:
        return None
    return pid if _alive(pid, command) else None


def _wait_gone(pid: int, command: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid, command):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _loop_backing(device: str) -> str:
    """The file loop ``device`` is set up on ('' when it is free)."""
    return _read(f"/sys/block/{os.path.basename(device)}/loop/backing_file")


def _loops_on(path: str) -> list[str]:
    """The loop devices set up on file ``path``."""
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return []
    return [f"/dev/{n}" for n in sorted(names)
            if n.startswith("loop") and _loop_backing(f"/dev/{n}") == path]


def _mounted(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and _unescape(fields[4]) == path:
            return True
    return False


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _device_in_use(device: str) -> str:
    """Why block ``device`` is in use ('' when it is not): mounted, held
    by another device, or open in some process."""
    try:
        rdev = os.stat(device).st_rdev
    except OSError:
        return ""
    with contextlib.suppress(OSError):
        if os.listdir(f"/sys/block/{os.path.basename(device)}/holders"):
            return "held by another block device"
    wanted = f"{os.major(rdev)}:{os.minor(rdev)}"
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as f:
        if any(line.split()[2:3] == [wanted] for line in f):
            return "mounted"
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if stat.S_ISBLK(st.st_mode) and st.st_rdev == rdev:
                return f"open in process {entry}"
    return ""


# -- the actions ---------------------------------------------------------------------


class Volume:
    """The map an action is about, and its attachment on this host."""

    def __init__(self, config: Config, env: Mapping[str, str], node: Node | None = None):
        self.config = config
        self.env = env
        self.node = node or Node(config)
        self.run_dir = config.run_dir
        vol_name = env.get("VOL_NAME", "")
        if not vol_name:
            raise Failure("VOL_NAME is not set (run by Ganeti?)")
        self.vol_name = vol_name
        cname = env.get("VOL_CNAME", "")
        self.name = cname or _read(self._alias_path()) or vol_name
        if not _NAME.match(self.name):
            raise Failure(f"volume name {self.name!r}: letters, digits, '.', '_' or '-'"
                          " only, starting with a letter or digit")
        self.dir = os.path.join(self.run_dir, self.name)
        self.mnt = os.path.join(self.dir, "mnt")
        self.file = os.path.join(self.mnt, "disk")
        self.pid_file = os.path.join(self.dir, "nbdfuse.pid")
        self.log_file = os.path.join(self.dir, "nbdfuse.log")
        self.loop_file = os.path.join(self.dir, "loop")

    def _alias_path(self) -> str:
        return os.path.join(self.run_dir, ".names", self.vol_name)

    def remember_name(self) -> None:
        """Record the map of a Ganeti volume whose disk has a name: Ganeti
        runs ``snapshot`` without ``VOL_CNAME``."""
        if self.name == self.vol_name:
            return
        os.makedirs(os.path.dirname(self._alias_path()), mode=0o700, exist_ok=True)
        if _read(self._alias_path()) != self.name:
            _write_atomically(self._alias_path(), self.name)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this map's lock (attach, detach, grow, remove)."""
        locks = os.path.join(self.run_dir, ".locks")
        os.makedirs(locks, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(locks, self.name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- attachment

    def device(self) -> str:
        """The loop device of a live attachment, or ''."""
        loop = _read(self.loop_file)
        if not loop or _pid_of(self.pid_file, "nbdfuse") is None:
            return ""
        try:
            st = os.stat(self.file)  # ENOTCONN once nbdfuse is gone
        except OSError:
            return ""
        if not stat.S_ISREG(st.st_mode) or _loop_backing(loop) != self.file:
            return ""
        return loop

    def attach(self) -> str:
        """Attach (or find attached) the map; the loop device."""
        with self.locked():
            found = self.device()
            if found:
                return found
            self.release()
            host, port, tls = self.node.nbd_server()
            try:
                self._start_nbdfuse(host, port, tls)
                done = _run([_which("losetup"), "--find", "--show", self.file])
                loop = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
                if done.returncode != 0 or not loop.startswith("/dev/"):
                    raise Failure(f"losetup {self.file}: {done.stderr.strip() or done.stdout}")
                _write_atomically(self.loop_file, loop)
            except BaseException:
                with contextlib.suppress(Failure, OSError):
                    self.release()
                raise
            return loop

    def _start_nbdfuse(self, host: str, port: int, tls: bool = False) -> None:
        os.makedirs(self.mnt, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pid_file)
        where = f"[{host}]" if ":" in host else host
        uri = f"nbd://{where}:{port}/{self.name}"
        env = {"PATH": PATH, "LC_ALL": "C"}
        if tls:
            pki = self.config.nbd_pki
            if not pki:
                raise Failure("the node's NBD server requires TLS: install the provider"
                              " with its CA (nbd_tls_certificates in archipelago.conf)")
            # nbdfuse may not name certificate files in its URI; libnbd finds
            # them in $HOME/.pki/libnbd, so give it a home whose one is ours.
            home = os.path.join(self.dir, "home")
            os.makedirs(os.path.join(home, ".pki"), mode=0o700, exist_ok=True)
            link = os.path.join(home, ".pki", "libnbd")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(pki, link)
            env["HOME"] = home
            uri = f"nbds://{where}:{port}/{self.name}"
        with open(self.log_file, "ab") as out:
            # Its own session, no pipe of ours: Ganeti waits for attach's
            # stdout to close, and nbdfuse stays until detach.
            child = subprocess.Popen(
                [_which("nbdfuse"), "-P", self.pid_file, self.file, uri],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/",
                env=env, start_new_session=True)
        deadline = time.monotonic() + NBDFUSE_START
        while time.monotonic() < deadline:
            if _read(self.pid_file):
                with contextlib.suppress(OSError):
                    if os.stat(self.file).st_size > 0:
                        return
            if child.poll() is not None:
                tail = " ".join(_read(self.log_file).splitlines()[-2:])
                raise Failure(f"nbdfuse {uri} exited {child.returncode}: {tail}")
            time.sleep(0.01)
        with contextlib.suppress(OSError):
            child.terminate()
        raise Failure(f"nbdfuse {uri} did not serve within {NBDFUSE_START:g} s")

    def release(self) -> None:
        """Undo what an attachment left (all or part of it); idempotent."""
        # The recorded device, and any other on our file (set up by an
        # attach that died before recording it).
        for loop in _loops_on(self.file):
            done = _run([_which("losetup"), "--detach", loop])
            if done.returncode != 0 and _loop_backing(loop) == self.file:
                raise Failure(f"losetup --detach {loop}: {done.stderr.strip()}")
        if _mounted(self.mnt):
            fusermount = _which("fusermount3")
            done = _run([fusermount, "-u", self.mnt])
            if done.returncode != 0 and _mounted(self.mnt):
                # Busy (a detach the kernel deferred while the device was
                # open): unmount lazily; nbdfuse goes when the file is closed.
                log(f"{self.mnt} busy ({done.stderr.strip()}): unmounting lazily")
                done = _run([fusermount, "-u", "-z", self.mnt])
                if done.returncode != 0 and _mounted(self.mnt):
                    raise Failure(f"fusermount3 -u {self.mnt}: {done.stderr.strip()}")
        pid = _pid_of(self.pid_file, "nbdfuse")
        if pid is not None and not _wait_gone(pid, "nbdfuse", NBDFUSE_EXIT):
            log(f"nbdfuse {pid} still runs {NBDFUSE_EXIT:g} s after the unmount: terminating it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, "nbdfuse", NBDFUSE_EXIT):
                raise Failure(f"nbdfuse {pid} does not exit")
        home = os.path.join(self.dir, "home")
        for path in (self.loop_file, self.pid_file, self.log_file,
                     os.path.join(home, ".pki", "libnbd")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for path in (self.mnt, os.path.join(home, ".pki"), home, self.dir):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(path)

    def flush(self) -> None:
        """Push what the attached device holds in caches to the node."""
        loop = self.device()
        if not loop:
            return
        fd = os.open(loop, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _mib(env: Mapping[str, str], key: str) -> int:
    value = env.get(key, "")
    try:
        size = int(value)
    except ValueError:
        raise Failure(f"{key}={value!r} is not a number of MiB") from None
    if size <= 0:
        raise Failure(f"{key}={value!r} is not a positive number of MiB")
    return size * MiB


def do_create(v: Volume) -> None:
    size = _mib(v.env, "VOL_SIZE")
    origin = v.env.get("EXTP_ORIGIN") or None
    status, info = v.node.call("PUT", f"/volumes/{v.name}",
                               {"size": size, "origin": origin, "exist_ok": True},
                               ok=(200, 201))
    v.remember_name()
    made = "created" if status == 201 else "exists"
    log(f"{v.name}: {made}, {info.get('size') if isinstance(info, dict) else '?'} bytes"
        + (f", a clone of {origin}" if origin and status == 201 else ""))


def do_attach(v: Volume) -> None:
    v.remember_name()
    started = time.monotonic()
    loop = v.attach()
    log(f"{v.name} on {loop} ({time.monotonic() - started:.2f} s)")
    print(loop, flush=True)


def do_detach(v: Volume) -> None:
    with v.locked():
        v.release()


def do_remove(v: Volume) -> None:
    """Ganeti removes the disk.  A ``managed`` disk's map belongs to the
    compute service (a volume that outlives its server, or that it deletes
    itself once the removal succeeded): only the attachment goes."""
    managed = v.env.get("EXTP_MANAGED", "").lower() in ("yes", "true", "1")
    with v.locked():
        v.release()  # Ganeti detaches first; a leftover would hold the map open
        if managed:
            status = 0
            log(f"{v.name}: managed by the compute service; the map stays")
        else:
            status, _ = v.node.call("DELETE", f"/volumes/{v.name}", ok=(200, 204, 404))
    if status == 404:
        log(f"{v.name}: already gone")
    for path in (os.path.join(v.run_dir, ".names", v.vol_name),
                 os.path.join(v.run_dir, ".locks", v.name)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def do_grow(v: Volume) -> None:
    size = _mib(v.env, "VOL_NEW_SIZE")
    v.node.call("POST", f"/volumes/{v.name}/grow", {"size": size})
    with v.locked():
        loop = v.device()
        if not loop:
            return
        # nbdfuse learns the size when it connects, so an attached device
        # keeps the old size: attach again when nothing holds the device.
        busy = _device_in_use(loop)
        if busy:
            log(f"{v.name}: {loop} is {busy}; it keeps its old size until the disk"
                " is attached again (deactivated and activated)")
            return
        v.release()
    log(f"{v.name}: attached again on {v.attach()} at the new size")


def do_snapshot(v: Volume) -> None:
    snap = v.env.get("VOL_SNAPSHOT_NAME", "")
    if not _NAME.match(snap):
        raise Failure(f"VOL_SNAPSHOT_NAME={snap!r} is not a volume name")
    v.flush()
    v.node.call("POST", f"/volumes/{v.name}/snapshot", {"snapshot": snap}, ok=(200, 201))
    log(f"{v.name}: snapshot {snap}")


def do_setinfo(v: Volume) -> None:
    log(f"{v.name}: metadata {v.env.get('VOL_METADATA', '')!r} (not kept)")


def do_open(v: Volume) -> None:
    """The node's NBD server already holds one writer per volume."""


def do_close(v: Volume) -> None:
    """See ``do_open``."""


ACTIONS: dict[str, Callable[[Volume], None]] = {
    "create": do_create, "attach": do_attach, "detach": do_detach, "remove": do_remove,
    "grow": do_grow, "snapshot": do_snapshot, "setinfo": do_setinfo,
    "open": do_open, "close": do_close,
}


def verify(config: Config) -> None:
    mode = os.stat(config.path).st_mode
    if mode & 0o077:
        raise Failure(f"{config.path} holds a token and must be readable by root only"
                      f" (mode {stat.S_IMODE(mode):o}, not 600)")
    for command in ("nbdfuse", "losetup", "fusermount3"):
        _which(command)
    host, port = Node(config).nbd_address()
    log(f"node {config.url} answers; NBD on {host}:{port}")


def main(action: str, env: Mapping[str, str] | None = None,
         directory: str | None = None) -> int:
    """Run Ganeti ExtStorage ``action``; the exit status."""
    env = os.environ if env is None else env
    here = directory or os.path.dirname(os.path.realpath(__file__))
    if action not in ACTIONS and action != "verify":
        print(f"archipelago: no action {action!r}", file=sys.stderr)
        return 2
    try:
        config = Config.load(here)
        if action == "verify":
            verify(config)
        else:
            ACTIONS[action](Volume(config, env))
    except Failure as e:
        print(f"archipelago {action}: {e}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"archipelago {action}:{where} {e.strerror or e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
