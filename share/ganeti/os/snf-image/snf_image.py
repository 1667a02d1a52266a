#!/usr/bin/python3 -I
"""Ganeti OS definition ``snf-image``: deploys an snfd image onto a new
instance's first disk and customizes it, without mounting anything.

Every script of this directory (``create export import rename verify``) is
a small wrapper that runs ``main(<its own name>)`` here.  Ganeti runs them
as root, in this directory, with only its own variables
(``PATH=/sbin:/bin:/usr/sbin:/usr/bin``): ``INSTANCE_NAME``,
``DISK_0_PATH``, ``OSP_CONFIG_URL``, ``OSP_IMG_ID``, ``OSP_IMG_FORMAT``...

``create``:

1. fetches the build's parameters once from ``OSP_CONFIG_URL`` (JSON; the
   node answers 404 to a second GET);
2. unless ``img_deployed`` is ``yes`` (the disk is a thin clone that holds
   the image already), writes the image onto ``DISK_0_PATH`` with
   ``qemu-img convert -n`` from the node's read-only NBD export
   ``snf-img-$INSTANCE_NAME`` (``img_nbd``: host, port, tls); ``-n`` keeps
   a file disk's size (nbdcopy would truncate it).  With TLS the CA of the
   node's certificate is ``pki/ca-cert.pem`` beside this file;
3. finds the root filesystem (partition ``ROOT_PARTITION`` of the image's
   properties, 1-based, from ``sfdisk --json``; the whole disk without a
   partition table) and, when it is ext2/3/4, grows it (and its partition,
   when it is the last one) to the disk and writes into it with e2fsprogs
   in userspace (``debugfs -w`` on ``<disk>?offset=<bytes>``): the host
   name, root's password hash in ``/etc/shadow``, ``auth_keys`` in
   ``/root/.ssh/authorized_keys`` and the personality files.  Another
   filesystem is deployed but not customized: one line on stderr, status 0.

The password is hashed here (SHA-512 crypt) and written only into a file
of a private temporary directory that debugfs copies in; it is never in an
argument list, the environment of a child or the log.  Progress goes to
stderr (Ganeti keeps it in its OS log); an error ends the script with one
line there and status 1.  When the parameters name ``img_progress_url``,
the copy's progress (0 and 100), the outcome of the customization (an
uncustomized filesystem is a warning the server's owner sees) and a
failure are also reported there (``Reporter``).  Standard library only
(``python3 -I``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

PATH = "/sbin:/bin:/usr/sbin:/usr/bin"
HERE = os.path.dirname(os.path.realpath(__file__))
#: Where ``snf-manage os-install --nbd-ca`` puts the CA of a TLS NBD server.
PKI = os.path.join(HERE, "pki")
#: Seconds the parameters' GET may take, and a progress report.
FETCH_TIMEOUT = 60
REPORT_TIMEOUT = 10
#: The NBD export of the image of a build (snfd's ``image_export_name``).
EXPORT_PREFIX = "snf-img-"
EXT_MAGIC = 0xEF53
SECTOR = 512
#: Bytes read from nbdcopy at a time (TLS into a file).
CHUNK = 4 * 1024 * 1024


class Failure(Exception):
    """Ends the script with status 1 and this one-line message."""


class NotCustomizable(Exception):
    """The image is deployed but cannot be customized: why, in one line."""


def log(message: str) -> None:
    print(f"snf-image: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], stdin: bytes | None = None, check: bool = True,
        ok: tuple[int, ...] = (0,), home: str | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    """Run a tool with a plain environment (and ``HOME``); fail with its
    last stderr line unless its status is in ``ok``."""
    env = {"PATH": PATH, "LC_ALL": "C", **({"HOME": home} if home else {})}
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, env=env,
                              stdin=None if stdin is not None else subprocess.DEVNULL,
                              check=False)
    except FileNotFoundError:
        raise Failure(f"{argv[0]} is not installed") from None
    if check and done.returncode not in ok:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise Failure(f"{os.path.basename(argv[0])} exited {done.returncode}: {tail[0]}")
    return done


# -- parameters ------------------------------------------------------------------

def fetch_params(url: str) -> dict[str, Any]:
    """The build's parameters: one GET of ``url`` (there is no second)."""
    if not url.startswith(("http://", "https://")):
        raise Failure("OSP_CONFIG_URL is not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as answer:  # noqa: S310
            params = json.loads(answer.read())
    except urllib.error.HTTPError as e:
        raise Failure(f"the build parameters could not be fetched: HTTP {e.code}"
                      " (they are handed out once)") from None
    except (OSError, ValueError) as e:
        raise Failure(f"the build parameters could not be fetched: {e}") from None
    if not isinstance(params, dict):
        raise Failure("the build parameters are not a JSON object")
    return params


class Reporter:
    """Reports progress and diagnostics to the node (``img_progress_url``
    of the parameters; none: nothing is reported), as Synnefo's progress
    messages: ``image-copy-progress`` with ``progress``, ``image-info``,
    ``-warning`` and ``-error`` with ``messages``; ``event_time`` from this
    host's clock (Ganeti's job times share it).  A report that cannot be
    sent is one line on stderr: the build never fails over it."""

    def __init__(self, url: Any = None):
        self.url = url if isinstance(url, str) and url.startswith(("http://", "https://")) \
            else None

    def send(self, kind: str, **fields: Any) -> None:
        if self.url is None:
            return
        now = time.time()
        body = json.dumps({"type": kind, "event_time": [int(now), int(now % 1 * 1e6)],
                           **fields}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=REPORT_TIMEOUT):  # noqa: S310
                pass
        except (OSError, ValueError) as e:
            log(f"a {kind} report could not be sent: {e}")

    def progress(self, percent: int) -> None:
        self.send("image-copy-progress", progress=percent)

    def diagnostic(self, level: str, message: str) -> None:
        self.send(f"image-{level}", messages=[message])


#: The reporter of the running build (``create`` sets it).
REPORTER = Reporter()


def _json_field(params: dict[str, Any], key: str, default: Any) -> Any:
    text = params.get(key)
    if text in (None, ""):
        return default
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        raise Failure(f"build parameter {key} is not valid JSON") from None


# -- the image onto the disk -----------------------------------------------------

def write_image(params: dict[str, Any], disk: str, instance: str) -> None:
    """Copy the image's NBD export onto ``disk`` (a file keeps its size)."""
    nbd = _json_field(params, "img_nbd", None)
    if not isinstance(nbd, dict) or not nbd.get("host") or not nbd.get("port"):
        raise Failure("the image cannot be fetched: the build parameters give no NBD"
                      " export (img_nbd); the node must run the volume service (archip)")
    host, port, export = str(nbd["host"]), int(nbd["port"]), EXPORT_PREFIX + instance
    where = f"[{host}]" if ":" in host else host
    started = time.monotonic()
    if nbd.get("tls"):
        uri = f"nbds://{where}:{port}/{export}"
        log(f"writing the image from {uri} onto {disk}")
        _copy_tls(uri, disk)
    else:
        log(f"writing the image from nbd://{where}:{port}/{export} onto {disk}")
        # -n: the disk exists (a file keeps its size; nbdcopy would cut it).
        run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw",
             f"nbd://{where}:{port}/{export}", disk])
    with open(disk, "rb+") as f:
        os.fsync(f.fileno())
    log(f"image written in {time.monotonic() - started:.2f} s")


def _copy_tls(uri: str, disk: str) -> None:
    """nbdcopy over TLS (libnbd: the CA in $HOME/.pki/libnbd, as URIs may
    not name certificate files; qemu-img also wants the CA to carry CA
    basic constraints, which a node's self-signed certificate lacks).
    Onto a block device directly; into a file through a pipe, written in
    place (nbdcopy would truncate the file), chunks the file already holds
    (zeros of a fresh disk) left alone."""
    if not os.path.isfile(os.path.join(PKI, "ca-cert.pem")):
        raise Failure("the node's NBD server requires TLS: install the OS definition"
                      " with its CA (snf-manage os-install --nbd-ca)")
    with tempfile.TemporaryDirectory(prefix="snf-image-home-") as home:
        os.mkdir(os.path.join(home, ".pki"), 0o700)
        os.symlink(PKI, os.path.join(home, ".pki", "libnbd"))
        if stat.S_ISBLK(os.stat(disk).st_mode):
            run(["nbdcopy", uri, disk], home=home)
            return
        size = disk_size(disk)
        env = {"PATH": PATH, "LC_ALL": "C", "HOME": home}
        with open(disk, "r+b") as out, subprocess.Popen(
                ["nbdcopy", uri, "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL, env=env) as child:
            assert child.stdout is not None and child.stderr is not None
            offset = 0
            while chunk := child.stdout.read(CHUNK):
                if offset + len(chunk) > size:
                    child.kill()
                    raise Failure(f"the image is larger than the disk ({size} bytes)")
                if out.read(len(chunk)) != chunk:
                    out.seek(offset)
                    out.write(chunk)
                offset += len(chunk)
            errors = child.stderr.read().decode(errors="replace").strip()
        if child.returncode != 0:
            raise Failure(f"nbdcopy exited {child.returncode}: {errors.splitlines()[-1:]}")


# -- finding the root filesystem -------------------------------------------------

def disk_size(disk: str) -> int:
    fd = os.open(disk, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def partitions(disk: str) -> tuple[str, list[dict[str, Any]]]:
    """The partition table's label and partitions (``sfdisk --json``; no
    table: ``("", [])``)."""
    done = run(["sfdisk", "--json", disk], check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return "", []
    table = json.loads(done.stdout)["partitiontable"]
    if int(table.get("sectorsize", SECTOR)) != SECTOR:
        raise NotCustomizable(f"sector size {table.get('sectorsize')} is not supported")
    parts = table.get("partitions", [])
    for number, part in enumerate(parts, 1):
        found = re.search(r"(\d+)$", part.get("node", ""))
        part["number"] = int(found.group(1)) if found else number
    return str(table.get("label", "")), parts


def is_ext(disk: str, offset: int) -> bool:
    with open(disk, "rb") as f:
        f.seek(offset + 1024 + 56)
        magic = f.read(2)
    return len(magic) == 2 and int.from_bytes(magic, "little") == EXT_MAGIC


def root_filesystem(disk: str, properties: dict[str, Any]) -> tuple[int, int, int, bool]:
    """The root filesystem's offset and length in bytes, its partition's
    number (0: the whole disk) and whether that partition can grow to the
    disk's end (it is the last one)."""
    size = disk_size(disk)
    label, parts = partitions(disk)
    if not parts:
        return 0, size, 0, False
    wanted = str(properties.get("ROOT_PARTITION", "1")).strip()
    if not wanted.isdigit():
        raise NotCustomizable(f"ROOT_PARTITION {wanted!r} is not a partition number")
    chosen = [p for p in parts if p["number"] == int(wanted)]
    if not chosen:
        raise NotCustomizable(f"the image has no partition {wanted}")
    part = chosen[0]
    start, length = int(part["start"]) * SECTOR, int(part["size"]) * SECTOR
    last = max(int(p["start"]) + int(p["size"]) for p in parts) * SECTOR == start + length
    growable = last and not (label == "dos" and part["number"] > 4)
    return start, length, part["number"], growable


# -- growing ---------------------------------------------------------------------

def grow(disk: str, offset: int, length: int, number: int, growable: bool) -> int:
    """Grow the root partition (when it is the last) and its filesystem to
    the disk; the filesystem's new length in bytes."""
    size = disk_size(disk)
    if number:
        if not growable:
            log("the root partition is not the last one: not grown")
            return length
        label, _ = partitions(disk)
        if label == "gpt":
            run(["sfdisk", "-q", "--relocate", "gpt-bak-std", disk])
        run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", "-N", str(number), disk],
            stdin=b", +\n")
        _, parts = partitions(disk)
        part = next(p for p in parts if p["number"] == number)
        length = int(part["size"]) * SECTOR
    else:
        length = size
    device = f"{disk}?offset={offset}"
    run(["e2fsck", "-f", "-p", device], ok=(0, 1))
    shown = run(["dumpe2fs", "-h", device]).stdout.decode(errors="replace")
    block = int(_field(shown, "Block size"))
    per_group = int(_field(shown, "Blocks per group"))
    blocks = length // block
    # resize2fs sizes the filesystem from the whole device when an offset is
    # given (past the partition's end): name the size.  And on a regular
    # file it then truncates the file to the filesystem's length, counted
    # from the file's start, cutting the last `offset` bytes: keep every
    # block group's start (its metadata) out of them, so that only free
    # blocks are cut, and give the file its size back.
    tail = -(-offset // block) + 64
    if offset and 0 < blocks % per_group <= tail:
        blocks -= blocks % per_group
    run(["resize2fs", device, str(blocks)])
    if disk_size(disk) < size:
        os.truncate(disk, size)
        if number and partitions(disk)[0] == "gpt":
            run(["sfdisk", "-q", "--relocate", "gpt-bak-std", disk])
    run(["e2fsck", "-f", "-n", device])
    log(f"root filesystem grown to {blocks * block} bytes")
    return blocks * block


def _field(dump: str, name: str) -> str:
    found = re.search(rf"^{name}:\s+(\S+)", dump, re.M)
    if not found:
        raise Failure(f"dumpe2fs shows no {name}")
    return found.group(1)


# -- writing into an ext filesystem ------------------------------------------------

class Ext:
    """An ext2/3/4 filesystem at ``offset`` of ``disk``, edited with debugfs."""

    def __init__(self, disk: str, offset: int, scratch: str):
        self.device = f"{disk}?offset={offset}"
        self.scratch = scratch
        self.count = 0

    def debugfs(self, *requests: str, write: bool = False) -> str:
        script = os.path.join(self.scratch, "requests")
        with open(script, "w") as f:
            f.write("\n".join(requests) + "\n")
        argv = ["debugfs", *(["-w"] if write else []), "-f", script, self.device]
        done = run(argv)
        errors = [line for line in done.stderr.decode(errors="replace").splitlines()
                  if line and not line.startswith("debugfs ")
                  and not line.startswith("debugfs:")]
        if errors:
            raise Failure(f"debugfs: {errors[0]}")
        return done.stdout.decode(errors="replace")

    def exists(self, path: str) -> bool:
        done = run(["debugfs", "-R", f'stat "{path}"', self.device])
        return b"File not found" not in done.stderr and b"Inode:" in done.stdout

    def read(self, path: str) -> bytes | None:
        if not self.exists(path):
            return None
        return run(["debugfs", "-R", f'cat "{path}"', self.device]).stdout

    def owner_mode(self, path: str) -> tuple[int, int, int] | None:
        done = run(["debugfs", "-R", f'stat "{path}"', self.device]).stdout.decode()
        mode = re.search(r"Mode:\s+(\d+)", done)
        user = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", done)
        if not mode or not user:
            return None
        return int(user.group(1)), int(user.group(2)), int(mode.group(1), 8)

    def makedirs(self, path: str, mode: int = 0o755) -> None:
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            here = "/" + "/".join(parts[:i])
            if not self.exists(here):
                self.debugfs(f'mkdir "{here}"', f'sif "{here}" mode 0{0o40000 | mode:o}',
                             f'sif "{here}" uid 0', f'sif "{here}" gid 0', write=True)

    def write(self, path: str, data: bytes, mode: int, uid: int = 0, gid: int = 0) -> None:
        """Make ``path`` hold ``data`` (replacing it), with ``mode``, ``uid``, ``gid``."""
        _check_path(path)
        parent = os.path.dirname(path)
        if parent != "/":
            self.makedirs(parent)
        self.count += 1
        source = os.path.join(self.scratch, f"f{self.count}")
        fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        requests = [f'rm "{path}"'] if self.exists(path) else []
        requests += [f'write "{source}" "{path}"', f'sif "{path}" mode 0{0o100000 | mode:o}',
                     f'sif "{path}" uid {uid}', f'sif "{path}" gid {gid}']
        try:
            self.debugfs(*requests, write=True)
        finally:
            os.unlink(source)

    def ids(self, table: str) -> dict[str, int]:
        """Names to ids of the image's ``/etc/passwd`` or ``/etc/group``."""
        found: dict[str, int] = {}
        for line in (self.read(f"/etc/{table}") or b"").decode(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                found.setdefault(fields[0], int(fields[2]))
        return found


def _check_path(path: str) -> None:
    if not path.startswith("/") or any(c in path for c in '"\n\r\\') or "/../" in path + "/":
        raise Failure(f"refusing to write {path!r}: not a plain absolute path")


def password_hash(password: str) -> str:
    """SHA-512 crypt of ``password`` (the password goes to openssl on stdin
    where python's crypt is gone)."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    except ImportError:
        done = run(["openssl", "passwd", "-6", "-stdin"], stdin=password.encode() + b"\n")
        return done.stdout.decode().strip()


def set_root_password(fs: Ext, password: str) -> None:
    shadow = fs.read("/etc/shadow")
    if shadow is None:
        raise NotCustomizable("the image has no /etc/shadow")
    uid, gid, mode = fs.owner_mode("/etc/shadow") or (0, 0, 0o640)
    lines = shadow.decode().splitlines()
    hashed = password_hash(password)
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == "root" and len(fields) > 1:
            fields[1] = hashed
            fields[2:3] = [str(int(time.time() // 86400))] if len(fields) > 2 else []
            lines[i] = ":".join(fields)
            break
    else:
        lines.insert(0, f"root:{hashed}:{int(time.time() // 86400)}:0:99999:7:::")
    fs.write("/etc/shadow", ("\n".join(lines) + "\n").encode(), mode & 0o7777, uid, gid)


def customize(fs: Ext, params: dict[str, Any], instance: str) -> None:
    # The server's name as a host name (img_hostname), else the instance's.
    hostname = str(params.get("img_hostname") or "") or instance
    fs.write("/etc/hostname", f"{hostname}\n".encode(), 0o644)
    log(f"host name {hostname}")
    password = params.get("img_passwd")
    if password:
        set_root_password(fs, str(password))
        log("root password set")
    keys = str(params.get("auth_keys") or "").strip()
    if keys:
        fs.makedirs("/root", 0o700)
        fs.makedirs("/root/.ssh", 0o700)
        fs.debugfs('sif "/root/.ssh" mode 040700', write=True)
        fs.write("/root/.ssh/authorized_keys", (keys + "\n").encode(), 0o600)
        log(f"{len(keys.splitlines())} SSH key(s) for root")
    personality = _json_field(params, "img_personality", [])
    if personality:
        users, groups = fs.ids("passwd"), fs.ids("group")
        for item in personality:
            path = str(item.get("path", ""))
            try:
                data = base64.b64decode(item.get("contents", ""), validate=True)
            except ValueError:
                raise Failure(f"personality file {path}: contents are not base64") from None
            mode = item.get("mode", 0o440)
            mode = int(mode, 8) if isinstance(mode, str) else int(mode)
            fs.write(path, data, mode & 0o7777, _id(item.get("owner"), users, "owner", path),
                     _id(item.get("group"), groups, "group", path))
        log(f"{len(personality)} personality file(s)")


def _id(name: Any, table: dict[str, int], what: str, path: str) -> int:
    if name in (None, ""):
        return 0
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    if str(name) not in table:
        raise Failure(f"personality file {path}: unknown {what} {name!r} in the image")
    return table[str(name)]


# -- actions -------------------------------------------------------------------

def create(env: dict[str, str]) -> int:
    started = time.monotonic()
    disk, instance = env.get("DISK_0_PATH", ""), env.get("INSTANCE_NAME", "")
    if not disk or not instance:
        raise Failure("no DISK_0_PATH or INSTANCE_NAME: not run by Ganeti?")
    global REPORTER
    params = fetch_params(env.get("OSP_CONFIG_URL", ""))
    REPORTER = reporter = Reporter(params.get("img_progress_url"))
    if params.get("img_deployed") == "yes":
        log("the disk holds the image already (a thin clone): not written")
    else:
        kind = os.stat(disk).st_mode
        if not (stat.S_ISREG(kind) or stat.S_ISBLK(kind)):
            raise Failure(f"{disk}: neither a file nor a block device")
        reporter.progress(0)
        write_image(params, disk, instance)
    reporter.progress(100)
    # Property names are matched without regard to case: the image API
    # carries them in HTTP headers, which lower-cases them.
    found = _json_field(params, "img_properties", {})
    properties = {str(k).upper(): v for k, v in found.items()} \
        if isinstance(found, dict) else {}
    try:
        offset, length, number, growable = root_filesystem(disk, properties)
        if not is_ext(disk, offset):
            raise NotCustomizable("the root filesystem is not ext2/3/4"
                                  f" ({f'partition {number}' if number else 'whole disk'})")
        grow(disk, offset, length, number, growable)
        with tempfile.TemporaryDirectory(prefix="snf-image-") as scratch:
            os.chmod(scratch, 0o700)
            customize(Ext(disk, offset, scratch), params, instance)
    except NotCustomizable as e:
        print(f"snf-image: deployed, not customized: {e}", file=sys.stderr, flush=True)
        reporter.diagnostic("warning", f"The image was deployed but not customized (no"
                            f" host name, password, keys or files were set): {e}.")
        return 0
    reporter.diagnostic("info", "The image was deployed and customized (host name,"
                        " password, keys and files).")
    log(f"create done in {time.monotonic() - started:.2f} s")
    return 0


def main(action: str) -> int:
    os.umask(0o077)
    try:
        if action == "create":
            return create(dict(os.environ))
        if action in ("rename", "verify"):
            return 0
        if action in ("export", "import"):
            raise Failure(f"{action} is not supported: snfd moves servers between"
                          " clusters through images and snapshots")
        raise Failure(f"unknown action {action!r}")
    except Failure as e:
        print(f"snf-image: {action}: {e}", file=sys.stderr, flush=True)
        REPORTER.diagnostic("error", f"snf-image {action} failed: {e}.")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "verify"))
