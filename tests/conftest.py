"""Shared fixtures: every test fails if it leaves a ``sage_nb/`` thread alive; ``env`` and
``make_env``; ``shell``, the in-process IPython shell with sage_nb loaded. And the lanes: the
markers that say what a test starts (see ``pytest_collection_modifyitems`` below)."""

from __future__ import annotations

import functools
import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import COLLECTED, WAIT, sage_threads

from sage_nb import LocalEnvironment

# A run started as a background job of a non-interactive shell (`make test &`, some CI
# runners) inherits SIGINT ignored, and Python then keeps it ignored: Ctrl-C tests in this
# process would wait for an interrupt that never comes. Give SIGINT back its usual handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

HERE = Path(__file__).resolve().parent


# -- lanes ------------------------------------------------------------------------------------
# ``make fast`` runs  pytest -m "not slow and not kernel and not browser and not ray".  The
# markers (registered in pyproject.toml) say what a test starts. Where a fixture or the
# directory says it, the hook below adds the marker, so it cannot go stale:
#   browser  tests under tests/browser/ (JupyterLab and Chromium; they run kernels: kernel too)
#   kernel   tests that use a fixture starting a real kernel, and nbval's notebook cells
#   ray      tests that use the ``ray_cluster`` fixture, and notebooks that switch to Ray
# Everything else is explicit in the test files: ``slow`` (more than ~2 s by itself),
# ``kernel`` on tests that start a ``KernelSession`` themselves, ``ray`` on the "ray" param
# of tests/backends' ``backend`` fixture. tests/project/test_lanes.py checks the lot.

#: Fixtures that start a real Jupyter kernel (tests/notebook/conftest.py) or JupyterLab.
KERNEL_FIXTURES = frozenset({"kernel", "fresh_kernel", "lab"})
#: Fixtures that start (or join) the local Ray cluster (tests/backends/conftest.py).
RAY_FIXTURES = frozenset({"ray_cluster"})
#: Code of a notebook that uses the Ray backend.
RAY_CODE = re.compile(r"\bray\b|RemoteEnvironment")


@functools.cache
def notebook_uses_ray(path: Path) -> bool:
    """Whether a code cell of the notebook at ``path`` mentions Ray."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return any(
        RAY_CODE.search("".join(cell["source"])) for cell in cells if cell["cell_type"] == "code"
    )


def lane_markers(item: pytest.Item) -> set[str]:
    """The lane markers that ``item``'s directory, fixtures or notebook call for."""
    markers: set[str] = set()
    if item.path.is_relative_to(HERE / "browser"):
        markers |= {"browser", "kernel"}
    if item.path.suffix == ".ipynb":  # a cell run by nbval, in the notebook's kernel
        markers.add("kernel")
        if notebook_uses_ray(item.path):
            markers.add("ray")
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & KERNEL_FIXTURES:
        markers.add("kernel")
    if fixtures & RAY_FIXTURES:
        markers.add("ray")
    return markers


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in sorted(lane_markers(item)):
            item.add_marker(name)
    config.stash[COLLECTED] = list(items)


# -- threads and environments -------------------------------------------------------------------
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
