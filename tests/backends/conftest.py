"""Fixtures of the backend contract suite: one local Ray cluster per test session, and
``backend_env``, an environment of each backend, closed (and checked) after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from backend_helpers import Rendezvous
from support import session_ray_cluster

from sage_nb import BaseEnvironment, LocalEnvironment

HERE = Path(__file__).resolve().parent

#: The "ray" half of the contract suite starts the cluster: it carries the ``ray`` marker.
BACKENDS = ["threads", pytest.param("ray", marks=pytest.mark.ray)]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One local Ray cluster for the whole session (starting one takes seconds)."""
    yield from session_ray_cluster(HERE)


def make_environment(backend: str, request: pytest.FixtureRequest, **options: Any):
    if backend == "threads":
        return LocalEnvironment("test", **options)
    if request.node.get_closest_marker("ray") is None:
        msg = (
            f"{request.node.nodeid} starts Ray without the ray marker, so the fast lane "
            "(-m 'not ray') would run it; request the ray_cluster fixture or mark it ray"
        )
        pytest.fail(msg, pytrace=False)
    request.getfixturevalue("ray_cluster")
    from sage_nb import RemoteEnvironment

    return RemoteEnvironment("test", **options)


def close_and_check(env: BaseEnvironment) -> None:
    """Close ``env``; it must close cleanly and leave no actor alive."""
    assert env.close(timeout=10.0), f"{env!r} did not close cleanly"
    if env.backend == "ray":
        assert env.actors() == [], f"actors left alive: {env.actors()}"  # type: ignore[attr-defined]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def backend_env(backend: str, request: pytest.FixtureRequest) -> Iterator[BaseEnvironment]:
    """An environment of each backend (``LocalEnvironment``, ``RemoteEnvironment``)."""
    env = make_environment(backend, request)
    yield env
    close_and_check(env)


@pytest.fixture
def make_env(
    backend: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., BaseEnvironment]]:
    """``make_env(**options)``: an environment of the test's backend, closed after it."""
    made: list[BaseEnvironment] = []

    def make(**options: Any) -> BaseEnvironment:
        env = make_environment(backend, request, **options)
        made.append(env)
        return env

    yield make
    for env in made:
        close_and_check(env)


@pytest.fixture
def ray_env(ray_cluster: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A ``RemoteEnvironment`` for Ray-only tests (on the session's cluster: marked ray)."""
    env = make_environment("ray", request)
    yield env
    close_and_check(env)


@pytest.fixture
def rendezvous() -> Iterator[Rendezvous]:
    """Gates and signals that work across processes; every gate is opened at teardown."""
    place = Rendezvous()
    yield place
    place.close()
