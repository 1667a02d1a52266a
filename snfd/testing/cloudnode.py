"""A whole ``twistd snfd`` node for integration tests and benchmarks, driven
by blocking calls.

``CloudNode(dsn, state_dir, plugins, config_text, env)`` writes a config
file (``[database] auto_upgrade = yes`` followed by ``config_text``), starts
``twistd -n snfd`` with ``SNFD_DATABASE_URL``/``SNFD_PLUGINS`` and ``env`` on
a free port of 127.0.0.1, runs ``snf-manage`` against the same config and
database, makes users with ``user-add``, and calls the node's HTTP API.
Everything blocks: call it from ``setUp`` through
``twisted.internet.threads.deferToThread``, or from a thread.

Usage::

    node = CloudNode(dsn, root / "node", "identity,pithos,cyclades",
                     "[cyclades]\\nreconcile_interval = 3600\\n", {"SNFD_BUS_URL": url})
    self.addCleanup(node.stop)
    node.start(ready_path="/compute/v2.0/flavors")
    alice = node.add_user("alice@example.org")
    status, body = node.api("GET", "/compute/v2.0/servers", alice.token)

The block store of the pithos plugin is its default, ``<state_dir>/blocks``
(``snf-manage`` runs with the same ``SNFD_STATE_DIR``).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from snfd.testing.node import NodeProcess, http_get

__all__ = ["MANAGE", "OPENSTACK", "CloudNode", "User"]

#: ``snf-manage`` as this interpreter runs it.
MANAGE = [sys.executable, "-m", "snfd.cli.manage"]
#: The ``openstack`` command line of this virtualenv.
OPENSTACK = str(Path(sys.executable).with_name("openstack"))


@attrs.frozen
class User:
    """A user made by ``snf-manage user-add``: its uuid (also its project),
    e-mail (its user name), password and API token."""

    uuid: str
    email: str
    password: str
    token: str


class CloudNode:
    """One ``twistd snfd`` node with the given plugins and configuration.

    ``dsn`` and ``state_dir`` may be those of an earlier node, to restart
    on its data.  The config file is ``<state_dir>.conf`` (next to the state
    directory, which ``stop`` leaves in place; the caller removes it).
    """

    def __init__(self, dsn: str, state_dir: Path, plugins: str = "identity,pithos",
                 config_text: str = "", env: dict[str, str] | None = None):
        self.dsn = dsn
        self.state_dir = Path(state_dir)
        self.plugins = plugins
        self.config_path = self.state_dir.parent / f"{self.state_dir.name}.conf"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("[database]\nauto_upgrade = yes\n" + config_text)
        self.env = {"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": plugins, **(env or {})}
        self.process = NodeProcess(env=self.env, args=["--config", str(self.config_path)],
                                   state_dir=self.state_dir)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the node."""
        return self.process.url

    @property
    def log_path(self) -> Path:
        """The node's log file (its stdout and stderr)."""
        return self.process.log_path

    def log(self) -> str:
        """The whole node log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the node log."""
        return self.process.tail(lines)

    def start(self, timeout: float = 120.0, ready_path: str | None = None) -> None:
        """Start the process and wait until ``/_health`` answers 200 and, if
        ``ready_path`` is given, until a GET of it answers anything but 404
        or a 5xx (e.g. 401 for an API that wants a token).

        @raise AssertionError: with the log tail, when the process exits or
            ``timeout`` seconds pass first.
        """
        self.process.start()
        deadline = time.monotonic() + timeout
        healthy = False
        while time.monotonic() < deadline:
            proc = self.process.proc
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"node exited with {proc.returncode}:\n{self.tail()}")
            try:
                if not healthy:
                    healthy = http_get(self.url + "/_health", timeout=2)[0] == 200
                if healthy:
                    if ready_path is None:
                        return
                    status = http_get(self.url + ready_path, timeout=5)[0]
                    if status != 404 and status < 500:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"node not ready after {timeout}s:\n{self.tail()}")

    def stop(self) -> None:
        """Kill the process (idempotent)."""
        self.process.cleanup()

    def manage(self, *argv: str, timeout: float = 300.0) -> str:
        """Run ``snf-manage <argv>`` on this node's config and database; its stdout.

        @raise AssertionError: with stderr, when it exits non-zero.
        """
        env = dict(os.environ, SNFD_STATE_DIR=str(self.state_dir), **self.env)
        proc = subprocess.run([*MANAGE, "--config", str(self.config_path), *argv],
                              env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"snf-manage {' '.join(argv)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc.stdout

    def add_user(self, email: str, first: str = "Test", last: str = "User") -> User:
        """Create and activate a user with ``snf-manage user-add``; the
        password is ``"password of <email>"``."""
        password = f"password of {email}"
        made = json.loads(self.manage(
            "user-add", "--email", email, "--password", password, "--first-name", first,
            "--last-name", last, "--activate", "--json"))
        return User(made["uuid"], email, password, made["token"])

    def api(self, method: str, path: str, token: str | None = None, body: Any = None,
            timeout: float = 120.0) -> tuple[int, Any]:
        """One blocking API call: ``path`` under the node's URL, ``token``
        as ``X-Auth-Token``, ``body`` sent as JSON unless None.  Returns the
        status and the parsed JSON answer (None when empty, the text when
        it is not JSON)."""
        status, _, data = self.request(
            method, path, token,
            None if body is None else json.dumps(body).encode(),
            {"Content-Type": "application/json"} if body is not None else None, timeout)
        if not data:
            return status, None
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data.decode("utf-8", "replace")

    def request(self, method: str, path: str, token: str | None = None,
                body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 120.0) -> tuple[int, dict[str, str], bytes]:
        """One blocking HTTP request to the node: status, lowercased headers, body."""
        parts = urlsplit(self.url + path)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                          timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if token:
                hdrs["X-Auth-Token"] = token
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request(method, target, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def openstack(self, user: User, *argv: str, timeout: float = 120.0) -> Any:
        """Run the ``openstack`` command as ``user`` (Keystone v3 password
        auth on this node); its parsed JSON output when ``-f json`` is among
        ``argv``, else its text.

        @raise AssertionError: with stderr and the log tail when it fails.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(OS_AUTH_URL=f"{self.url}/identity/v3", OS_IDENTITY_API_VERSION="3",
                   OS_USERNAME=user.email, OS_PASSWORD=user.password,
                   OS_PROJECT_ID=user.uuid, OS_USER_DOMAIN_NAME="Default",
                   OS_PROJECT_DOMAIN_NAME="Default")
        proc = subprocess.run([OPENSTACK, *argv], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"openstack {' '.join(argv)} failed:\n{proc.stderr}\n"
                                 + self.tail())
        return json.loads(proc.stdout) if "json" in argv else proc.stdout
