"""The node's network stack as the NIC scripts see it: ``ip``, ``bridge`` and
``nft`` commands and ``/proc/sys`` switches, run in the calling process's
network namespace.

Every method that changes something logs one line first (the command, or
the switch and its new value); queries log nothing.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

Log = Callable[[str], None]


class CommandFailed(Exception):
    """A command exited non-zero; the message is one line: the command and
    the first line it printed on stderr."""


class Host:
    """Runs commands against the node's network stack.

    ``proc_sys`` is where the ``/proc/sys`` tree is (tests may point it
    elsewhere); ``timeout`` bounds every command, in seconds.
    """

    def __init__(self, log: Log, proc_sys: Path = Path("/proc/sys"), timeout: float = 30.0):
        self._log = log
        self._proc_sys = proc_sys
        self._timeout = timeout

    def note(self, line: str) -> None:
        """Log a decision that changes nothing."""
        self._log(line)

    def change(self, *argv: str, stdin: str | None = None, what: str | None = None) -> None:
        """Run a command that changes the host, logging ``what`` (or the
        command itself) first; raise :class:`CommandFailed` if it fails."""
        self._log(what or " ".join(argv))
        self._run(list(argv), stdin)

    def query(self, *argv: str) -> Any:
        """Run a read-only command with ``-j`` output and return the parsed
        JSON (``[]`` for no output); raise :class:`CommandFailed` on failure."""
        out = self._run(list(argv), None)
        return json.loads(out) if out.strip() else []

    def link(self, name: str) -> dict[str, Any] | None:
        """``ip -d link show`` of ``name`` as a dict, or None if it does not exist."""
        try:
            links = self.query("ip", "-j", "-d", "link", "show", "dev", name)
        except CommandFailed:
            return None
        return links[0] if links else None

    def nft_tables(self) -> set[tuple[str, str]]:
        """The (family, name) of every nftables table."""
        ruleset = self.query("nft", "-j", "list", "tables")
        items = ruleset.get("nftables", []) if isinstance(ruleset, dict) else []
        return {(i["table"]["family"], i["table"]["name"]) for i in items if "table" in i}

    def read_switch(self, path: str) -> str | None:
        """The value of ``/proc/sys/<path>``, or None if it does not exist."""
        try:
            return (self._proc_sys / path).read_text().strip()
        except OSError:
            return None

    def write_switch(self, path: str, value: str) -> None:
        """Set ``/proc/sys/<path>`` to ``value``, logging it."""
        self._log(f"set {path.replace('/', '.')} = {value}")
        try:
            (self._proc_sys / path).write_text(value + "\n")
        except OSError as e:
            raise CommandFailed(f"cannot set {path}: {e.strerror}") from None

    def _run(self, argv: list[str], stdin: str | None) -> str:
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self._timeout,
                check=False,
            )
        except FileNotFoundError:
            raise CommandFailed(f"{argv[0]}: command not found") from None
        except subprocess.TimeoutExpired:
            raise CommandFailed(f"{' '.join(argv)}: no answer in {self._timeout}s") from None
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            first = lines[0] if lines else f"exit status {proc.returncode}"
            raise CommandFailed(f"{' '.join(argv)}: {first}")
        return proc.stdout
