"""Run real ``twistd snfd`` processes from trial tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twisted.internet import task

TWISTD = str(Path(sys.executable).with_name("twistd"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """A blocking GET (for test processes only): status, headers, body."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - test on 127.0.0.1
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


class NodeProcess:
    """One ``twistd -n snfd`` child process on a free port.

    Its output goes to ``<state_dir>/node.log`` (printed by ``tail`` when a
    test needs it).  ``cleanup`` kills it (SIGCONT first, in case a test
    froze it) and removes its state directory.
    """

    def __init__(self, env: dict[str, str] | None = None, args: list[str] | None = None,
                 state_dir: Path | None = None):
        self.port = free_port()
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="snfd-node-"))
        self._own_state = state_dir is None
        self.env = dict(os.environ)
        self.env.update({
            "SNFD_STATE_DIR": str(self.state_dir),
            "SNFD_LISTEN": f"tcp:{self.port}:interface=127.0.0.1",
            # The volume service's NBD server, when it runs, on a port of its own.
            "SNFD_NBD_LISTEN": f"tcp:{free_port()}:interface=127.0.0.1",
            # The tests read /_cluster from here without a token.
            "SNFD_CLUSTER_TRUSTED": "127.0.0.1",
        })
        self.env.update(env or {})
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.state_dir / "node.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "--logger=snfd.logs.observer", "snfd", *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.state_dir)
        log.close()

    async def wait_ready(self, reactor: Any, timeout: float = 60.0) -> None:
        """Wait until ``/_health`` answers 200; fail with the log if the
        process exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                status, _, _ = http_get(self.url + "/_health", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"node not ready after {timeout}s:\n{self.tail()}")

    def get_json(self, path: str) -> tuple[int, Any]:
        status, _, body = http_get(self.url + path)
        return status, json.loads(body) if body else None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def run_twistd(args: list[str], env: dict[str, str], timeout: float = 60.0,
               cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``twistd <args>`` to completion (for startup-error tests)."""
    full = dict(os.environ)
    full.update(env)
    return subprocess.run([TWISTD, *args], env=full, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or tempfile.gettempdir())
