"""Fixtures for the runtime tests: gates that are always released, and a service that blocks on
demand so timeouts and queueing can be tested without sleeping (``env`` and ``make_env``, extra
environments, are in tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from support import WAIT

from sage_nb import LocalEnvironment


@pytest.fixture
def gate(env: LocalEnvironment, make_env: Callable[..., LocalEnvironment]) -> Iterator[Any]:
    """An Event that blocks services or operators; set before any environment closes."""
    event = threading.Event()
    yield event
    event.set()


@dataclass
class Blocker:
    """The state shared with a ``BlockingService``: what it received and when it runs."""

    gate: threading.Event
    entered: threading.Event = field(default_factory=threading.Event)
    calls: list[Any] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    def register(self, env: LocalEnvironment, name: str = "slow", **options: Any) -> None:
        """Register a ``BlockingService`` sharing this state as ``name``."""
        env.register_service(name, BlockingService, self, **options)


class BlockingService:
    """``process(x)`` records ``x``; ``block(x)`` also waits for the gate (at most 5 s)."""

    def __init__(self, state: Blocker) -> None:
        self.state = state

    def process(self, x: Any) -> Any:
        self.state.calls.append(x)
        return x

    def block(self, x: Any) -> Any:
        self.state.calls.append(x)
        self.state.entered.set()
        self.state.gate.wait(WAIT)
        return x

    def close(self) -> None:
        self.state.closed.set()


@pytest.fixture
def blocker(gate: threading.Event) -> Blocker:
    """State for a ``BlockingService``; its gate is released at teardown."""
    return Blocker(gate)
