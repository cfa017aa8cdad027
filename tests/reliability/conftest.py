"""Fixtures for the reliability tests: gates that are always released, so a service blocked on
purpose never outlives its test (``make_env``, environments closed after the test, is in
tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from sage_nb import LocalEnvironment


@pytest.fixture
def gate(make_env: Callable[..., LocalEnvironment]) -> Iterator[threading.Event]:
    """An Event that services wait on; set at teardown, before the environments close
    (it depends on ``make_env``, so it is torn down first)."""
    event = threading.Event()
    yield event
    event.set()
