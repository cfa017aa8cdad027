"""Replacing a running service (register_service(..., replace=True)) without losing calls."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support import WAIT

from sage_nb import LocalEnvironment, ServiceUnavailableError


def make_version(tag: str, closed: threading.Event | None = None) -> type:
    class Version:
        def process(self, x: Any) -> tuple[str, Any]:
            return (tag, x)

        def close(self) -> None:
            if closed is not None:
                closed.set()

    Version.__name__ = Version.__qualname__ = f"Version_{tag}"
    return Version


class CallerThread:
    """Calls the service continuously; records every answer and every error."""

    def __init__(self, env: LocalEnvironment, name: str, until_new: int = 50) -> None:
        self.env = env
        self.name = name
        self.until_new = until_new
        self.results: list[tuple[int, Any]] = []
        self.errors: list[BaseException] = []
        self.warm = threading.Event()
        self.saw_new = threading.Event()
        self.stop = threading.Event()
        self.progress = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="swap-caller")

    def _run(self) -> None:
        i = 0
        new = 0
        while not self.stop.is_set():
            try:
                result = self.env.call_service(self.name, i, timeout=WAIT)
            except BaseException as exc:
                with self.progress:
                    self.errors.append(exc)
                    self.progress.notify_all()
                break
            with self.progress:
                self.results.append((i, result))
                self.progress.notify_all()
            if i == 50:
                self.warm.set()
            if result[0] == "new":
                new += 1
                if new >= self.until_new:
                    self.saw_new.set()
            i += 1

    def wait_for_results(self, n: int) -> bool:
        """Wait until ``n`` calls have been answered (or the caller failed)."""
        with self.progress:
            return self.progress.wait_for(lambda: len(self.results) >= n or bool(self.errors), WAIT)

    def __enter__(self) -> CallerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


def test_swap_while_called_loses_nothing(env: LocalEnvironment) -> None:
    old_closed = threading.Event()
    env.register_service("svc", make_version("old", old_closed))
    with CallerThread(env, "svc") as caller:
        assert caller.warm.wait(WAIT), caller.errors
        env.register_service("svc", make_version("new"), replace=True)
        assert old_closed.is_set()  # the old version was closed by the swap
        assert env.call_service("svc", "direct") == ("new", "direct")
        assert caller.saw_new.wait(WAIT), caller.errors

    assert caller.errors == []
    # every call got its own answer, the old version first, then only the new one
    assert [x for x, (_, y) in caller.results if x != y] == []
    tags = [tag for _, (tag, _) in caller.results]
    first_new = tags.index("new")
    assert first_new >= 50
    assert set(tags[:first_new]) == {"old"}
    assert set(tags[first_new:]) == {"new"}
    assert env.statistics().services[0].version == 2


def test_swap_with_concurrent_workers(env: LocalEnvironment) -> None:
    old_closed = threading.Event()
    env.register_service("svc", make_version("old", old_closed), concurrency=3)
    with CallerThread(env, "svc") as caller:
        assert caller.warm.wait(WAIT), caller.errors
        env.register_service("svc", make_version("new"), replace=True, concurrency=2)
        assert caller.saw_new.wait(WAIT), caller.errors
    assert caller.errors == []
    assert old_closed.is_set()
    assert env.statistics().services[0].workers == 2


def test_swap_keeps_queued_requests(env: LocalEnvironment, blocker: Any) -> None:
    blocker.register(env)
    running = env.call_service_async("slow", "running", method="block", timeout=WAIT * 2)
    assert blocker.entered.wait(WAIT)
    queued = env.call_service_async("slow", "queued", timeout=WAIT * 2)

    swapped = threading.Event()

    def swap() -> None:
        env.register_service("slow", make_version("new"), replace=True)
        swapped.set()

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        # the swap waits for the running request of the old version before closing it
        assert not swapped.wait(0.05)
        assert not blocker.closed.is_set()
    finally:
        blocker.gate.set()
        swapper.join(WAIT)
    assert swapped.is_set()
    assert running.result(timeout=WAIT) == "running"  # finished by the old version
    assert queued.result(timeout=WAIT) == ("new", "queued")  # answered by the new one
    assert blocker.closed.is_set()


def test_failed_replacement_keeps_the_old_version(env: LocalEnvironment) -> None:
    old_closed = threading.Event()
    env.register_service("svc", make_version("old", old_closed))

    class Broken:
        def setup(self) -> None:
            raise RuntimeError("replacement setup failed")

        def process(self, x: Any) -> tuple[str, Any]:
            return ("broken", x)

    with CallerThread(env, "svc") as caller:
        assert caller.warm.wait(WAIT), caller.errors
        with pytest.raises((RuntimeError, ServiceUnavailableError)) as info:
            env.register_service("svc", Broken, replace=True)
        chain = [info.value, info.value.__cause__]
        assert any("replacement setup failed" in str(e) for e in chain if e is not None)
        count = len(caller.results)
        assert env.call_service("svc", "after") == ("old", "after")
        assert caller.wait_for_results(count + 20)  # more calls, against the old version
    assert caller.errors == []
    assert {tag for _, (tag, _) in caller.results} == {"old"}
    assert not old_closed.is_set()

    # the old definition is still the registered one: a restart builds it again
    assert env.stop(timeout=WAIT)
    assert env.call_service("svc", "restarted") == ("old", "restarted")


def test_replace_of_stopped_service_takes_effect_on_next_start(env: LocalEnvironment) -> None:
    env.register_service("svc", make_version("old"))
    assert env.call_service("svc", 1) == ("old", 1)
    env.stop(timeout=WAIT)
    env.register_service("svc", make_version("new"), replace=True)
    assert env.call_service("svc", 2) == ("new", 2)
