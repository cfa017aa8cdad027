"""Fixtures for the notebook layer: an in-process IPython shell, and real kernels.

``shell``: the process-wide ``InteractiveShell`` with ``%load_ext sage_nb`` done; teardown
unloads the extension, which stops every thread it started (the autouse fixture of
``tests/conftest.py`` checks). ``kernel``: one real kernel per module; ``fresh_kernel``: one
per test (see ``notebook_helpers.KernelSession``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from notebook_helpers import KernelSession


# -- in-process shell ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ipython() -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    return InteractiveShell.instance(config=config)


@pytest.fixture
def shell(ipython: Any) -> Iterator[Any]:
    """The in-process shell with sage_nb loaded; unloaded (everything stopped) afterwards."""
    from sage_nb.notebook import kernel

    assert kernel.current() is None, "a previous test left sage_nb loaded"
    ipython.run_line_magic("load_ext", "sage_nb")
    try:
        yield ipython
    finally:
        if "sage_nb" in ipython.extension_manager.loaded:
            ipython.run_line_magic("unload_ext", "sage_nb")
        for name in [n for n in ipython.user_ns if not n.startswith("_")]:
            if name not in ipython.user_ns_hidden:
                del ipython.user_ns[name]
    assert kernel.current() is None


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
