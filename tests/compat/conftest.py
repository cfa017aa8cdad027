"""Fixtures of the SAGE-compatibility tests: ``ray_cluster``, the session's local Ray cluster
(shared with tests/backends; the name gives a test the ``ray`` lane marker), with the modules
of this directory sent to Ray's workers by value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import session_ray_cluster

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One local Ray cluster for the whole session (or the one tests/backends started)."""
    yield from session_ray_cluster(HERE)
