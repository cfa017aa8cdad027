"""``ray_compat.on_completed`` on the real local Ray: the private route (``_on_completed``) and
the public fallback (``ref.future()``) pass the callback the same thing, for a value, for an
exception the task raised and for an actor that died."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from backend_helpers import WAIT

from sage_nb.backends.ray import ray_compat
from sage_nb.backends.ray.errors import translate_ray_error
from sage_nb.errors import ServiceCallError, ServiceUnavailableError


class Spy:
    """A real ObjectRef that records which of its attributes ``on_completed`` used; with
    ``private=False`` it has no ``_on_completed``, as in a Ray that dropped it."""

    def __init__(self, ref: Any, *, private: bool = True) -> None:
        self.ref = ref
        self.private = private
        self.used: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name == "_on_completed" and not self.private:
            raise AttributeError(name)
        self.used.append(name)
        return getattr(self.ref, name)


#: route -> (Spy options, what on_completed should use, ray_compat.use_private_api)
ROUTES = {
    "private": ({}, ["_on_completed"], True),
    "fallback (flag)": ({}, ["future"], False),
    "fallback (no _on_completed)": ({"private": False}, ["future"], True),
}


@pytest.fixture(params=sorted(ROUTES))
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(ray_compat, "use_private_api", ROUTES[request.param][2])
    return request.param  # type: ignore[no-any-return]


def outcome(route: str, ref: Any) -> Any:
    """What ``on_completed`` passes its callback for ``ref``, by ``route``."""
    spy_options, used, _ = ROUTES[route]
    spy = Spy(ref, **spy_options)
    got: list[Any] = []
    done = threading.Event()

    def callback(value: Any) -> None:
        got.append(value)
        done.set()

    ray_compat.on_completed(spy, callback)
    assert done.wait(WAIT), f"{route}: the callback never ran"
    assert spy.used == used
    assert len(got) == 1
    return got[0]


def answer(x: Any) -> Any:
    return x


def boom() -> None:
    raise ValueError("boom 7")


class Pid:
    def ready(self) -> int:
        return 1

    def die(self) -> None:
        os._exit(1)


def test_a_value_reaches_the_callback(ray_cluster: Any, route: str) -> None:
    ray = ray_cluster
    assert outcome(route, ray.remote(answer).remote({"x": [1, 2]})) == {"x": [1, 2]}
    ref = ray.remote(answer).remote(b"frame")
    ray.get(ref, timeout=WAIT)  # ready before the callback is registered: it still runs
    assert outcome(route, ref) == b"frame"


def test_a_raised_exception_reaches_the_callback_as_a_value(ray_cluster: Any, route: str) -> None:
    from ray import exceptions as rex

    failure = outcome(route, ray_cluster.remote(boom).remote())
    assert isinstance(failure, rex.RayTaskError)
    assert isinstance(failure.cause, ValueError)
    assert "boom 7" in str(failure)
    error = translate_ray_error(failure, "svc", "process")
    assert isinstance(error, ServiceCallError)
    assert (error.remote_type, error.remote_message) == ("ValueError", "boom 7")


def test_a_dead_actor_reaches_the_callback_as_actor_died(ray_cluster: Any, route: str) -> None:
    from ray import exceptions as rex

    ray = ray_cluster
    actor = ray.remote(Pid).options(max_restarts=0).remote()
    assert ray.get(actor.ready.remote(), timeout=WAIT) == 1
    # An actor runs its calls in order: ready() comes after die(), in a dead process. (After
    # ray.kill(), which returns before the actor is gone, a call could still be answered.)
    actor.die.remote()
    failure = outcome(route, actor.ready.remote())
    assert isinstance(failure, rex.ActorDiedError)
    assert isinstance(translate_ray_error(failure, "svc", "ready"), ServiceUnavailableError)
