"""Shared fixtures: every test fails if it leaves a ``sage_nb/`` thread alive; ``env`` and
``make_env``; and ``shell``, the in-process IPython shell with sage_nb loaded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import WAIT, sage_threads

from sage_nb import LocalEnvironment


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Fail the test if a sage_nb/ thread is still alive 2 s after it ended."""
    before = set(sage_threads())
    yield
    deadline = time.monotonic() + 2.0
    for t in sage_threads():
        if t not in before:
            t.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in sage_threads() if t not in before]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def env():
    """A LocalEnvironment closed after the test."""
    environment = LocalEnvironment("test")
    yield environment
    assert environment.close(timeout=WAIT), "environment did not close cleanly"


@pytest.fixture
def make_env() -> Iterator[Callable[..., LocalEnvironment]]:
    """``make_env(name, **options)``: a LocalEnvironment with options, closed after the test.
    (tests/backends/ has its own: an environment of the test's backend.)"""
    made: list[LocalEnvironment] = []

    def make(name: str = "test", **options: Any) -> LocalEnvironment:
        environment = LocalEnvironment(name, **options)
        made.append(environment)
        return environment

    yield make
    for environment in made:
        assert environment.close(timeout=WAIT), f"{environment!r} did not close cleanly"


# -- the in-process IPython shell (notebook and reliability tests) ------------------------
@pytest.fixture(scope="session")
def ipython() -> Iterator[Any]:
    """The process-wide in-process IPython shell (history kept in memory). At the end, the
    event loop IPython made for top-level ``await`` in cells is closed (else Python warns of
    an unclosed event loop at exit)."""
    from IPython.core import async_helpers
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    yield InteractiveShell.instance(config=config)
    loop = async_helpers._asyncio_event_loop
    if loop is not None and not loop.is_running():
        loop.close()


@pytest.fixture
def shell(ipython: Any) -> Iterator[Any]:
    """The shell with ``%load_ext sage_nb`` done; unloaded (everything stopped) afterwards."""
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
