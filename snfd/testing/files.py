"""Temporary files for tests."""

from __future__ import annotations

import os
import tempfile
from typing import Any


def temp_file(testcase: Any, content: str | bytes, suffix: str = ".conf") -> str:
    """Write ``content`` to a new temporary file removed by a cleanup on
    ``testcase``; return its path."""
    fd, path = tempfile.mkstemp(suffix=suffix)
    os.write(fd, content.encode() if isinstance(content, str) else content)
    os.close(fd)
    testcase.addCleanup(os.unlink, path)
    return path
