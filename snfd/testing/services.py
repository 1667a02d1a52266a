"""Throwaway services for the test command on a machine that lacks them.

``python -m snfd.testing.services postgres-start DIR`` starts a private
PostgreSQL (trust auth, 127.0.0.1, a free port) and prints its admin DSN;
``postgres-stop DIR`` stops it and removes its files.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from snfd.testing.postgres import ThrowawayPostgres


def postgres_start(state: Path) -> None:
    server = ThrowawayPostgres()
    server.start()
    (state / "base").write_text(str(server.base))
    print(server.dsn)


def postgres_stop(state: Path) -> None:
    base = Path((state / "base").read_text().strip())
    try:
        pid = int((base / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
    except (OSError, ValueError, IndexError):
        pass
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    command, directory = sys.argv[1], Path(sys.argv[2])
    {"postgres-start": postgres_start, "postgres-stop": postgres_stop}[command](directory)
