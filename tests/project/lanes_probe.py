"""What tests/project/test_lanes.py needs to know of a collected test: its markers, and the
evidence of what it starts (its directory, its fixtures, its backend, what its module imports).

Also a pytest plugin: ``pytest --collect-only -p lanes_probe`` with ``SAGE_NB_LANES_OUT`` set
writes one ``record()`` per collected test to that file, as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Names whose presence in a test module means its tests start kernels themselves.
KERNEL_STARTERS = ("KernelSession", "KernelManager")
OUT = "SAGE_NB_LANES_OUT"


def record(item: pytest.Item) -> dict[str, Any]:
    """The facts about ``item`` that decide its lane, as plain JSON values."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    module = getattr(item, "module", None)
    return {
        "nodeid": item.nodeid,
        "path": item.path.relative_to(ROOT).as_posix(),
        "markers": sorted({m.name for m in item.iter_markers()}),
        "fixtures": sorted(getattr(item, "fixturenames", ())),
        "backend": params.get("backend") if isinstance(params.get("backend"), str) else None,
        "starts_kernels": any(hasattr(module, name) for name in KERNEL_STARTERS),
        "kind": type(item).__name__,
    }


def pytest_collection_finish(session: pytest.Session) -> None:
    out = os.environ.get(OUT)
    if out:
        Path(out).write_text(json.dumps([record(item) for item in session.items]))
