"""Fixtures for the reliability tests: environments closed after the test, and gates that are
always released, so a service blocked on purpose never outlives its test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sage_nb import LocalEnvironment

#: Longest any test waits for something that should happen at once.
WAIT = 5.0


@pytest.fixture
def make_env() -> Iterator[Callable[..., LocalEnvironment]]:
    """``make_env(**options)``: a LocalEnvironment with options, closed after the test."""
    made: list[LocalEnvironment] = []

    def make(name: str = "rel", **options: Any) -> LocalEnvironment:
        environment = LocalEnvironment(name, **options)
        made.append(environment)
        return environment

    yield make
    for environment in made:
        assert environment.close(timeout=WAIT), f"{environment!r} did not close cleanly"


@pytest.fixture
def gate(make_env: Callable[..., LocalEnvironment]) -> Iterator[threading.Event]:
    """An Event that services wait on; set at teardown, before the environments close
    (it depends on ``make_env``, so it is torn down first)."""
    event = threading.Event()
    yield event
    event.set()
