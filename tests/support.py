"""Helpers shared by the tests of every directory: how long to wait, sage_nb's threads by name,
the widget publisher's thread, cells run in the in-process IPython shell, and where the lanes
check finds what was collected.

Importable as ``support`` from any test: pyproject's ``[tool.pytest.ini_options] pythonpath``
puts ``tests/`` on ``sys.path``. Only the standard library and pytest are imported here, so the
runtime tests stay free of IPython (the shell helpers import it when they are called).

The backend tests keep their own ``backend_helpers.WAIT`` (longer: Ray calls included), and
the kernel tests ``notebook_helpers.KERNEL_WAIT``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: The repository's root directory.
ROOT = Path(__file__).resolve().parents[1]

#: Longest any test waits for something that should happen at once.
WAIT = 5.0

#: The MIME type of a Jupyter widget's view in a display bundle.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: The name of the thread that refreshes live views.
PUBLISHER_THREAD = "sage_nb/publisher"

#: Every test collected, before ``-m`` or ``-k`` deselected any: tests/conftest.py stores it,
#: tests/project/test_lanes.py reads it.
COLLECTED = pytest.StashKey[list[pytest.Item]]()


# -- threads -----------------------------------------------------------------------------------
def sage_threads(prefix: str = "sage_nb/") -> list[threading.Thread]:
    """Alive threads started by sage_nb (their names start with ``prefix``)."""
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def sage_thread_names(prefix: str = "sage_nb/") -> list[str]:
    """The sorted names of ``sage_threads(prefix)``."""
    return sorted(t.name for t in sage_threads(prefix))


def publisher_threads() -> list[threading.Thread]:
    """The widget publisher's thread, if it runs (a list: empty or one)."""
    return [t for t in threading.enumerate() if t.name == PUBLISHER_THREAD]


def join_publisher(timeout: float = WAIT) -> None:
    """Wait (at most ``timeout`` seconds) for the publisher thread to end, if it runs."""
    for t in publisher_threads():
        t.join(timeout)


# -- cells in the in-process shell (the ``shell`` fixture) ------------------------------------
def run(shell: Any, code: str) -> Any:
    """Run a cell as a user would (stored in the history); return its ExecutionResult."""
    return shell.run_cell(code, store_history=True)


def ok(shell: Any, code: str) -> Any:
    """Run a cell that must succeed; return its result."""
    res = run(shell, code)
    if not res.success:
        raise AssertionError(f"cell failed: {res.error_before_exec or res.error_in_exec!r}")
    return res.result


def error(shell: Any, code: str) -> BaseException:
    """Run a cell that must fail; return what it raised."""
    res = run(shell, code)
    err = res.error_before_exec or res.error_in_exec
    assert err is not None, f"cell did not fail: {code!r}"
    return err  # type: ignore[no-any-return]


def usage_error(shell: Any, code: str) -> str:
    """Run a cell that must raise a one-line UsageError; return its message."""
    from IPython.core.error import UsageError

    err = error(shell, code)
    assert type(err) is UsageError, f"expected UsageError, got {err!r}"
    message = str(err)
    assert message and "\n" not in message
    return message


# -- Ray ---------------------------------------------------------------------------------------
#: Short (Unix socket paths under it must stay below 107 bytes) and apart from /tmp/ray.
RAY_TEMP_DIR = "/tmp/sage_ray"


def session_ray_cluster(directory: Path) -> Iterator[Any]:
    """The body of a session ``ray_cluster`` fixture: one local cluster for the whole session
    (started by whichever directory's fixture comes first), with the test modules of
    ``directory`` sent to Ray's workers by value (they are not importable there)."""
    import os
    import sys

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray  # a missing ray fails the test: make test installs it

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=RAY_TEMP_DIR, log_to_driver=False)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().parent == directory:
            ray.cloudpickle.register_pickle_by_value(module)
    yield ray
    if started:
        ray.shutdown()


def wait_until(predicate: Any, timeout: float = WAIT) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` passes (False)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.01)
    return True
