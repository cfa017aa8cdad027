"""Fixtures for the notebook layer: an in-process IPython shell, and real kernels.

``shell`` (defined in ``tests/conftest.py``): the process-wide ``InteractiveShell`` with
``%load_ext sage_nb`` done; teardown unloads the extension, which stops every thread it started
(the autouse fixture there checks). ``kernel``: one real kernel per module; ``fresh_kernel``:
one per test (see ``notebook_helpers.KernelSession``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from notebook_helpers import KernelSession


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelSession]:
    """One kernel with sage_nb loaded, shared by a module's tests (each cleans up its own
    services with %sage_reset)."""
    session = KernelSession()
    try:
        session.execute("%load_ext sage_nb")
        yield session
    finally:
        session.shutdown()


@pytest.fixture
def fresh_kernel(tmp_path: Any) -> Iterator[KernelSession]:
    """A kernel of its own, for tests that restart it."""
    session = KernelSession(cwd=str(tmp_path))
    try:
        yield session
    finally:
        session.shutdown()
