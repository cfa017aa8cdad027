"""Fixtures of the SAGE-compatibility tests: ``ray_cluster``, the session's local Ray cluster,
as in tests/backends/conftest.py (the name gives a test the ``ray`` lane marker), with the
modules of this directory sent to Ray's workers by value."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent

#: The same cluster options as tests/backends/conftest.py (whichever fixture starts it).
RAY_TEMP_DIR = "/tmp/sage_ray"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One local Ray cluster for the whole session (or the one tests/backends started)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=RAY_TEMP_DIR, log_to_driver=False)
    # Test modules are not importable in Ray's workers: send their classes by value.
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().parent == HERE:
            ray.cloudpickle.register_pickle_by_value(module)
    yield ray
    if started:
        ray.shutdown()
