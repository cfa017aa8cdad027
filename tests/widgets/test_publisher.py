"""The publisher thread's ways to end: its last view closes, the environments it watches close,
``release(env)`` (``%sage_reset``) and ``shutdown()`` (``%unload_ext``, kernel shutdown).

Each test waits on the thread itself (a bounded join) and never on the clock; the autouse
fixture of ``tests/conftest.py`` also fails a test that leaves ``sage_nb/publisher`` running.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator

import pytest
from support import WAIT, join_publisher, publisher_threads, wait_until

from sage_nb import LocalEnvironment
from sage_nb.notebook.widgets import GraphView, MonitorView, ProgressView, publisher
from sage_nb.notebook.widgets.publisher import publish, release, shutdown

# The package exports the publisher() function under the module's name.
publisher_module = importlib.import_module("sage_nb.notebook.widgets.publisher")


def shown(view: MonitorView | GraphView | ProgressView) -> None:
    """What displaying a view in a cell does: publish its bundle, which registers it."""
    view._repr_mimebundle_()


@pytest.fixture
def envs() -> Iterator[list[LocalEnvironment]]:
    made = [LocalEnvironment(f"pub-{i}", keep_services=True) for i in range(2)]
    for env in made:
        env.register_service("s", lambda: 1)
    yield made
    for env in made:
        env.close()
    shutdown()


def test_the_thread_ends_when_its_last_view_closes(envs: list[LocalEnvironment]) -> None:
    a, b = MonitorView(envs[0]), MonitorView(envs[1])
    shown(a)
    shown(b)
    (thread,) = publisher_threads()
    assert thread.daemon
    a.close()
    assert thread.is_alive()  # one view left: it keeps running
    b.close()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert publisher().views == []


def test_the_thread_ends_when_the_environment_closes(envs: list[LocalEnvironment]) -> None:
    view = MonitorView(envs[0])
    shown(view)
    (thread,) = publisher_threads()
    envs[0].close()  # fires the activity signal: the publisher wakes, the view closes
    thread.join(WAIT)
    assert view.closed and not thread.is_alive()


def test_stopping_the_environment_keeps_its_views(envs: list[LocalEnvironment]) -> None:
    view = MonitorView(envs[0])
    shown(view)
    envs[0].stop()  # services stop but restart on their next call: still worth watching
    assert envs[0].call_service("s") == 1
    assert not view.closed and publisher_threads()


def test_release_closes_only_that_environments_views(envs: list[LocalEnvironment]) -> None:
    mine, theirs = MonitorView(envs[0]), GraphView(envs[1])
    shown(mine)
    shown(theirs)
    envs[0].close()
    release(envs[0])
    assert mine.closed and not theirs.closed
    assert publisher_threads()  # a view is still open
    envs[1].close()
    release(envs[1])  # the last one: release waits for the thread to end
    assert theirs.closed
    assert publisher_threads() == []


def test_release_before_any_view_does_nothing(
    envs: list[LocalEnvironment], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher_module, "_publisher", None)
    release(envs[0])
    shutdown()
    assert publisher_module._publisher is None
    assert publisher_threads() == []


def test_shutdown_closes_every_view_and_a_new_view_starts_again(
    envs: list[LocalEnvironment],
) -> None:
    views = [MonitorView(envs[0]), GraphView(envs[1])]
    for view in views:
        shown(view)
    old = publisher()
    shutdown()
    assert all(v.closed for v in views)
    assert old.finished and publisher_threads() == []
    again = MonitorView(envs[0])
    shown(again)
    assert publisher() is not old
    assert publisher().views == [again]
    assert len(publisher_threads()) == 1


def test_a_view_shown_as_the_thread_ends_gets_a_new_publisher(
    envs: list[LocalEnvironment],
) -> None:
    first = MonitorView(envs[0])
    shown(first)
    old = publisher()
    first.close()
    join_publisher()
    assert old.finished
    late = MonitorView(envs[1])
    assert old.add(late) is False  # an ended publisher refuses it ...
    new = publish(late)  # ... and publish() makes a new one
    assert new is not old and new.views == [late]
    late.close()
    join_publisher()
    assert publisher_threads() == []


def test_a_closed_view_is_never_refreshed_again(envs: list[LocalEnvironment]) -> None:
    view = MonitorView(envs[0])
    before = view.widget.value
    view.close()
    envs[0].call_service("s")
    assert view.refresh() is False
    assert view.widget.value == before and view.updates == 0


def test_progress_wakes_the_publisher_when_its_job_ends(envs: list[LocalEnvironment]) -> None:
    gate = threading.Event()
    env = envs[0]
    env.from_batch([1, 2, 3]).map(lambda x: gate.wait(5) and x).sink(lambda r: None)
    job = env.submit(autostop=False)
    view = ProgressView(job)
    assert view.environments() == [env]  # the job's end fires env's activity signal
    shown(view)
    gate.set()
    assert job.wait(5)
    join_publisher()  # the view closes itself once the job is done; then the thread ends
    assert view.closed
    assert "3 / 3 (100.0%)" in view.html


def test_progress_without_autoclose_waits_for_its_owner(envs: list[LocalEnvironment]) -> None:
    env = envs[0]
    env.from_batch([1, 2, 3]).sink(lambda r: None)
    job = env.submit()
    view = ProgressView(job, autoclose=False)  # what %sage_submit shows: the cell closes it
    shown(view)
    view.refresh()
    assert not view.closed and view.busy() is False  # final numbers, nothing left to refresh
    assert "3 / 3 (100.0%)" in view.html
    (thread,) = publisher_threads()
    view.close()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_views_refreshed_in_one_round_share_the_services_statistics(
    envs: list[LocalEnvironment], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = envs[0]
    calls: list[int] = []
    real = env._dispatcher.statistics

    def counted() -> object:
        calls.append(1)
        return real()

    monkeypatch.setattr(env._dispatcher, "statistics", counted)
    graph, monitor = GraphView(env), MonitorView(env)
    env.from_batch([1]).sink(lambda r: None)
    calls.clear()
    with publisher_module._one_round():  # what the publisher thread does for each round
        graph.refresh()
        monitor.refresh()
    assert len(calls) == 1
    graph.refresh()  # outside a round (a test, a cell): always fresh
    monitor.refresh()
    assert len(calls) == 3


class FlakyMonitor(MonitorView):
    """Raises from refresh on chosen calls (the publisher's "look once more" is one of them)."""

    def __init__(self, env: LocalEnvironment, fail_on: set[int]) -> None:
        self.calls = 0
        self.fail_on = fail_on
        super().__init__(env)

    def refresh(self) -> bool:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError(f"refresh {self.calls} failed")
        return super().refresh()


def test_the_thread_survives_a_refresh_that_raises(envs: list[LocalEnvironment]) -> None:
    env = envs[0]
    # Call 2 is the "quiet" re-check, which ran outside the per-view guard: it killed the
    # thread, and every later view stayed frozen.
    view = FlakyMonitor(env, fail_on={2})
    shown(view)
    (thread,) = publisher_threads()
    pub = publisher()
    assert wait_until(lambda: view.calls >= 4)
    assert thread.is_alive()
    assert pub.errors == 1
    assert not view.closed
    env.call_service("s")  # activity wakes it: the view shows the call
    assert wait_until(lambda: view.data()["s"]["done"] == 1 and ">1<" in view.html)
    assert thread.is_alive()
    view.close()
    thread.join(WAIT)


def test_a_dead_thread_is_restarted_when_a_view_needs_it(
    envs: list[LocalEnvironment], monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = publisher()
    real_round = pub._round
    died = threading.Event()

    def dying_round(views: list[object]) -> bool:
        died.set()
        raise SystemExit("the thread dies")  # not an Exception: the round guard lets it go

    monkeypatch.setattr(pub, "_round", dying_round)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # expected: quiet
    first = MonitorView(envs[0])
    shown(first)
    assert died.wait(WAIT)
    join_publisher()
    assert not pub.alive
    monkeypatch.setattr(pub, "_round", real_round)
    second = MonitorView(envs[1])
    shown(second)  # the same publisher starts a new thread
    assert pub.alive
    assert publisher() is pub
    envs[1].call_service("s")
    assert wait_until(lambda: second.data()["s"]["done"] == 1)
    first.close()
    second.close()
    join_publisher()
