"""Load the third-party plugin fixture of the tests in process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "thirdparty"


def thirdparty_plugin() -> Any:
    """The fixture's ``ISnfdPlugin`` object, imported from its file (its
    schema package is put on ``sys.path``)."""
    if str(FIXTURE) not in sys.path:
        sys.path.append(str(FIXTURE))
    path = FIXTURE / "snfd" / "plugins" / "snfd_thirdparty.py"
    spec = importlib.util.spec_from_file_location("snfd_thirdparty_fixture", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.plugin
