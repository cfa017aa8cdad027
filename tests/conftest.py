"""Shared fixtures: every test fails if it leaves a ``sage_nb/`` thread alive."""

from __future__ import annotations

import threading
import time

import pytest

from sage_nb import LocalEnvironment


def _sage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sage_nb/")]


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Fail the test if a sage_nb/ thread is still alive 2 s after it ended."""
    before = set(_sage_threads())
    yield
    deadline = time.monotonic() + 2.0
    for t in _sage_threads():
        if t not in before:
            t.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in _sage_threads() if t not in before]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def env():
    """A LocalEnvironment closed after the test."""
    environment = LocalEnvironment("test")
    yield environment
    assert environment.close(timeout=5.0), "environment did not close cleanly"
