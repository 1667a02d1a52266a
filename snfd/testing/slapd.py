"""A private, throwaway OpenLDAP server for tests of the LDAP login provider.

``PrivateSlapd`` runs Debian's ``/usr/sbin/slapd`` in the foreground with a
``slapd.conf`` of its own (mdb backend, suffix ``dc=example,dc=org``, an
``ou=people`` branch), its own data directory and pid file, all under one
temporary directory, listening only on ``ldap://127.0.0.1:<port>/``.  It
runs as the current user (no ``-u``/``-g``), so as root it never drops to
the ``openldap`` user and never touches the system server's
``/etc/ldap/slapd.d`` or ``/var/lib/ldap``.

The ACLs are those of a typical directory: anyone may bind (``auth``) with
a password, a bound user may read entries, anonymous users may not.

Measured on the project machine: ``start()`` takes well under a second.
"""

from __future__ import annotations

import atexit
import base64
import errno
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: Where the OpenLDAP server and tools live (Debian ``slapd``, ``ldap-utils``).
SLAPD = Path(os.environ.get("SNFD_SLAPD", "/usr/sbin/slapd"))
SLAPADD = SLAPD.with_name("slapadd")
SCHEMA_DIR = Path(os.environ.get("SNFD_SLAPD_SCHEMA", "/etc/ldap/schema"))
MODULE_DIR = Path(os.environ.get("SNFD_SLAPD_MODULES", "/usr/lib/ldap"))

_PORT_RANGE = (18000, 19000)


class PrivateSlapd:
    """One private ``slapd`` on 127.0.0.1.

    ``start()``, ``stop()`` and ``add_person()`` block (they run the
    OpenLDAP tools as subprocesses); call them from ``setUp``/cleanups or
    through ``deferToThread`` while a reactor runs.  ``url`` is valid once
    ``start()`` returned and stays the same across ``stop_server()`` and
    ``start()`` (same port, same data).

    @param allow_unauthenticated_bind: make the server accept a simple bind
        with a DN and an empty password as an anonymous bind
        (``allow bind_anon_dn``), as some misconfigured directories do.
    @param tls: listen on ``ldaps://`` (TLS from the first byte) with a
        fresh self-signed certificate for 127.0.0.1, whose PEM is
        ``certificate``, instead of ``ldap://``.
    @raise RuntimeError: from the constructor when ``slapd`` or the
        ``ldap-utils`` tools are not installed.
    """

    base_dn = "dc=example,dc=org"
    people_dn = "ou=people,dc=example,dc=org"
    root_dn = "cn=admin,dc=example,dc=org"

    def __init__(self, start_timeout: float = 30.0,
                 allow_unauthenticated_bind: bool = False, tls: bool = False) -> None:
        missing = [str(p) for p in (SLAPD, SLAPADD) if not p.exists()]
        missing += [tool for tool in ("ldapadd", "ldapwhoami")
                    if shutil.which(tool) is None]
        if missing or not (SCHEMA_DIR / "inetorgperson.schema").exists():
            raise RuntimeError(
                "OpenLDAP is not installed (missing: "
                + (", ".join(missing) or str(SCHEMA_DIR / "inetorgperson.schema"))
                + "); apt-get install slapd ldap-utils to run these tests")
        self.start_timeout = start_timeout
        self.allow_unauthenticated_bind = allow_unauthenticated_bind
        self.tls = tls
        self.certificate: bytes | None = None
        self.root_password = secrets.token_urlsafe(16)
        self.port: int | None = None
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL, ``ldap://127.0.0.1:<port>`` (``ldaps``
        with ``tls``)."""
        if self.port is None:
            raise RuntimeError("PrivateSlapd was not started")
        scheme = "ldaps" if self.tls else "ldap"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server's process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def person_dn(self, uid: str) -> str:
        """The DN of the person ``uid``.

        Every character of ``uid`` but ASCII letters, digits, ``-``, ``_``
        and ``.`` is written as ``\\XX`` hex pairs of its UTF-8 bytes: a
        valid RFC 4514 spelling that a client's own escaping (backslash
        before special characters) can be compared with through the server.
        """
        value = "".join(
            ch if (ch.isascii() and ch.isalnum()) or ch in "-_." else
            "".join(f"\\{b:02X}" for b in ch.encode())
            for ch in uid)
        return f"uid={value},{self.people_dn}"

    def start(self) -> None:
        """Start the server and return once it answers a bind.

        The first call creates the directory, the database (with the base
        and ``ou=people`` entries) and picks the port; later calls reuse
        them.

        @raise RuntimeError: when the server exited or did not answer within
            ``start_timeout`` seconds; the message ends with its output.
            The server is stopped in that case.
        """
        if self.running:
            raise RuntimeError("slapd is already running")
        if self._base is None:
            self._prepare()
        assert self._base is not None
        with open(self._base / "slapd.log", "ab") as log:
            self._proc = subprocess.Popen(
                # -d 0: stay in the foreground (no fork) without debug output.
                [str(SLAPD), "-d", "0", "-f", str(self._base / "slapd.conf"),
                 "-h", f"{self.url}/"],
                env=self._env(), cwd=self._base, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)
        try:
            self._await_bind()
        except BaseException:
            self._halt()
            raise

    def stop(self) -> None:
        """Stop the server and remove every file.

        Idempotent; safe to call when ``start`` failed half-way.
        """
        atexit.unregister(self.stop)
        self._halt()
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
        self.port = None

    def stop_server(self) -> None:
        """Stop only the process; ``start()`` brings it back on the same
        port and data.  For tests of an unreachable server."""
        self._halt()

    def add_person(self, uid: str, password: str, mail: str = "",
                   given: str = "", sn: str = "") -> str:
        """Add an ``inetOrgPerson`` under ``ou=people`` and return its DN.

        ``password`` is stored as a salted SHA-1 (``{SSHA}``) hash, as
        ``slappasswd`` makes by default.  Works before ``start()`` and after
        ``stop_server()`` (``slapadd``) as well as while the server runs
        (``ldapadd`` as the root DN).
        """
        if self._base is None:
            self._prepare()
        dn = self.person_dn(uid)
        lines = [
            _ldif_value("dn", dn),
            "objectClass: inetOrgPerson",
            _ldif_value("uid", uid),
            _ldif_value("cn", f"{given} {sn}".strip() or uid),
            _ldif_value("sn", sn or uid),
            _ldif_value("userPassword", ssha(password)),
        ]
        if mail:
            lines.append(_ldif_value("mail", mail))
        if given:
            lines.append(_ldif_value("givenName", given))
        self._load("\n".join(lines) + "\n")
        return dn

    # -- internals ---------------------------------------------------------

    def _prepare(self) -> None:
        base = Path(tempfile.mkdtemp(prefix="snfd-slapd-"))
        self._base = base
        (base / "data").mkdir()
        self.port = _free_port()
        options = "allow bind_anon_dn\n" if self.allow_unauthenticated_bind else ""
        if self.tls:
            from snfd.testing.tls import self_signed

            self.certificate, key = self_signed("127.0.0.1")
            (base / "cert.pem").write_bytes(self.certificate)
            (base / "key.pem").write_bytes(key)
            (base / "key.pem").chmod(0o600)
            options += (f"TLSCertificateFile {base}/cert.pem\n"
                        f"TLSCertificateKeyFile {base}/key.pem\n")
        (base / "slapd.conf").write_text(
            f"include {SCHEMA_DIR}/core.schema\n"
            f"include {SCHEMA_DIR}/cosine.schema\n"
            f"include {SCHEMA_DIR}/inetorgperson.schema\n"
            f"pidfile {base}/slapd.pid\n"
            f"argsfile {base}/slapd.args\n"
            f"modulepath {MODULE_DIR}\n"
            "moduleload back_mdb\n"
            "loglevel none\n"
            f"{options}"
            "database mdb\n"
            "maxsize 16777216\n"
            f'suffix "{self.base_dn}"\n'
            f'rootdn "{self.root_dn}"\n'
            f"rootpw {ssha(self.root_password)}\n"
            f"directory {base}/data\n"
            "access to attrs=userPassword\n"
            "    by self write\n"
            "    by anonymous auth\n"
            "    by * none\n"
            "access to *\n"
            "    by users read\n"
            "    by * none\n")
        self._load(
            f"dn: {self.base_dn}\n"
            "objectClass: dcObject\n"
            "objectClass: organization\n"
            "dc: example\n"
            "o: Example\n"
            "\n"
            f"dn: {self.people_dn}\n"
            "objectClass: organizationalUnit\n"
            "ou: people\n")

    def _load(self, ldif: str) -> None:
        """Add entries: through the server when it runs, else offline."""
        if self._base is None:
            raise RuntimeError("PrivateSlapd was not started")
        if self.running:
            command = ["ldapadd", "-x", "-H", self.url, "-D", self.root_dn,
                       "-y", str(self._root_password_file())]
        else:
            command = [str(SLAPADD), "-q", "-f", str(self._base / "slapd.conf")]
        result = subprocess.run(
            command, input=ldif.encode(), env=self._env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{command[0]} failed ({result.returncode}):\n"
                + result.stdout.decode(errors="replace"))

    def _root_password_file(self) -> Path:
        assert self._base is not None
        path = self._base / "rootpw"
        if not path.exists():
            # -y reads the whole file: no trailing newline.
            path.write_text(self.root_password)
            path.chmod(0o600)
        return path

    def _env(self) -> dict[str, str]:
        """The environment of slapd and the tools: no user's ``.ldaprc``,
        and the tools trust the private certificate."""
        assert self._base is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("LDAP")}
        env["HOME"] = str(self._base)
        if self.tls:
            env["LDAPTLS_CACERT"] = str(self._base / "cert.pem")
        return env

    def _await_bind(self) -> None:
        assert self.port is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(
                    "slapd exited during startup:\n" + self._log_tail())
            if _listening(self.port):
                result = subprocess.run(
                    ["ldapwhoami", "-x", "-H", self.url, "-D", self.root_dn,
                     "-y", str(self._root_password_file()), "-o", "nettimeout=5"],
                    env=self._env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=30, check=False)
                if result.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"slapd did not answer on port {self.port} within"
                    f" {self.start_timeout} s:\n" + self._log_tail())
            time.sleep(0.05)

    def _halt(self) -> None:
        """Stop the process: TERM (slapd shuts down cleanly), then KILL."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        deadline = time.monotonic() + 10
        while (self.port is not None and _listening(self.port)
               and time.monotonic() < deadline):
            time.sleep(0.05)

    def _log_tail(self, lines: int = 40) -> str:
        if self._base is None:
            return ""
        try:
            content = (self._base / "slapd.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(content.splitlines()[-lines:])


def private_slapd(testcase, **kwargs) -> PrivateSlapd:
    """Start a ``PrivateSlapd`` whose removal is a cleanup of ``testcase``.

    ``kwargs`` go to ``PrivateSlapd``.  The cleanup runs whether the test
    passed or failed.  Raises ``RuntimeError`` (the test errors, it is not
    skipped) when OpenLDAP is not installed.
    """
    slapd = PrivateSlapd(**kwargs)
    testcase.addCleanup(slapd.stop)
    slapd.start()
    return slapd


def ssha(password: str) -> str:
    """``password`` as an OpenLDAP ``{SSHA}`` (salted SHA-1) value."""
    salt = secrets.token_bytes(8)
    # SHA-1 because that is what {SSHA} is; these are throwaway test passwords.
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _ldif_value(name: str, value: str) -> str:
    """One LDIF line, base64-encoded when the value is not safe as is."""
    safe = (value.isascii() and value.isprintable()
            and not value.startswith((" ", ":", "<")) and not value.endswith(" "))
    if safe:
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    """A port in 18000-18999 that nothing listens on or is bound to."""
    candidates = list(range(*_PORT_RANGE))
    start = secrets.randbelow(len(candidates))
    for port in candidates[start:] + candidates[:start]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    continue
                raise
        return port
    raise RuntimeError("no free port in 18000-18999")
