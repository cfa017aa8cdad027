"""%sage_graph, %sage_monitor and %sage_submit's live progress in an in-process shell: what
they display, their help, their errors, and that the publisher thread ends with sage_env.

A live view is displayed through the shell's display publisher; ``Shown`` records every
bundle (and every later ``update_display``) so tests read what a front end would receive.
The views themselves are reached through the publisher (``publisher().views``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support import (
    WIDGET_VIEW,
    join_publisher,
    ok,
    publisher_threads,
    sage_thread_names,
    usage_error,
)

from sage_nb.notebook import kernel
from sage_nb.notebook.widgets import GraphView, MonitorView, ProgressView, publisher
from sage_nb.notebook.widgets import views as views_module

PROFILE = """%%sage_service profile
def profile(user_id):
    return {"user_id": user_id, "age": 20 + int(user_id) % 50}
"""

PIPELINE = """from sage_nb import MapFunction

class Enrich(MapFunction):
    def execute(self, text):
        return {"text": text, "user": self.call_service("profile", str(len(text)))}

texts = ["a", "bb", "ccc", "<script>alert(1)</script>"]
out = []
sage_env.from_batch(texts).map(Enrich()).sink(out.append)
"""


class Shown:
    """What the shell published: bundles in order, with the display id they carry."""

    def __init__(self) -> None:
        self.bundles: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.widget_shown = threading.Event()

    def publish(self, data: dict[str, Any], *args: Any, **kw: Any) -> None:
        (self.updates if kw.get("update") else self.bundles).append(data)
        if WIDGET_VIEW in data:
            self.widget_shown.set()


@pytest.fixture
def shown(shell: Any) -> Iterator[Shown]:
    record = Shown()
    shell.display_pub.publish = record.publish
    try:
        yield record
    finally:
        del shell.display_pub.publish


@pytest.fixture
def profile(shell: Any) -> Any:
    ok(shell, PROFILE)
    return shell


@pytest.fixture
def in_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave as inside a Jupyter kernel: views become live widgets, closing one sends the
    static markup as a display update."""
    monkeypatch.setattr(views_module, "_in_kernel", lambda: True)


def open_views() -> list[Any]:
    return [v for v in publisher().views if not v.closed]


def publisher_alive() -> bool:
    return bool(publisher_threads())


def last_job(shell: Any) -> Any:
    return shell.user_ns["sage_env"].jobs[-1]


# -- help ------------------------------------------------------------------------------------
USAGE = {
    "sage_graph": "%sage_graph [job]",
    "sage_monitor": "%sage_monitor [NAME ...]",
}


@pytest.mark.parametrize("name", list(USAGE))
def test_help_comes_from_the_parser(shell: Any, name: str) -> None:
    magic = shell.find_line_magic(name)
    assert magic.__doc__.startswith("::\n\n  " + USAGE[name]), magic.__doc__
    info = shell.object_inspect_text("%" + name)
    assert USAGE[name] in info
    assert "live" in info
    assert "at most 10 a second" in info


def test_question_mark_shows_options_and_examples(shell: Any, capsys: Any) -> None:
    ok(shell, "%sage_monitor?")
    out = capsys.readouterr().out
    assert "%sage_monitor [NAME ...]" in out
    assert "services to watch" in out
    assert "%sage_monitor profile cache" in out
    ok(shell, "%sage_graph?")
    out = capsys.readouterr().out
    assert "a job's name, as %sage_status lists them" in out
    assert "display(sage_env.graph())" in out


def test_sage_nb_lists_the_widget_magics(shell: Any, capsys: Any) -> None:
    ok(shell, "%sage_nb")
    out = capsys.readouterr().out
    assert "%sage_graph [JOB]" in out
    assert "%sage_monitor [NAME]" in out


# -- %sage_graph -------------------------------------------------------------------------------
def test_graph_without_a_pipeline_says_how_to_build_one(shell: Any) -> None:
    message = usage_error(shell, "%sage_graph")
    assert message == (
        "sage_env has no pipeline yet; build one first, e.g. "
        "sage_env.from_batch(data).map(fn).sink(print), then %sage_graph"
    )
    assert not publisher_alive()


def test_graph_shows_the_pipeline_then_follows_its_job(profile: Any, shown: Shown) -> None:
    ok(profile, PIPELINE)
    assert ok(profile, "%sage_graph") is None  # displayed, not the cell's value
    (bundle,) = shown.bundles
    (view,) = open_views()
    assert isinstance(view, GraphView) and view.job is None
    assert bundle[WIDGET_VIEW]["model_id"] == view.widget.model_id
    assert bundle["text/html"] == view.html  # the static fallback beside the widget
    assert "sage_env: not submitted yet" in view.html
    labels = [n.label for n in view.model.nodes]
    assert labels == ["from_batch", "map(Enrich)", "sink(append)", "profile"]
    assert [e.kind for e in view.model.edges] == ["data", "data"]  # no call seen yet
    assert publisher_alive()

    ok(profile, "%sage_submit --no-progress")
    view.refresh()
    data = view.model.data
    assert data["from_batch"]["records_out"] == 4
    assert data["map(Enrich)"]["calls"] == ["profile"]  # the call edge, found at run time
    assert data["sink(append)"]["records_in"] == 4
    assert data["service:profile"]["done"] == 4
    assert view.model.title == f"{last_job(profile).name}: finished"
    assert [e.kind for e in view.model.edges] == ["call", "data", "data"]
    assert not view.closed  # it follows sage_env: the next job shows up in it


def test_graph_of_a_named_job_keeps_its_final_counts(profile: Any, shown: Shown) -> None:
    ok(profile, PIPELINE + "%sage_submit --no-progress")
    name = last_job(profile).name  # job names count up across environments: sage_env-N
    ok(profile, f"%sage_graph {name}")
    (bundle,) = shown.bundles
    assert f"{name}: finished" in bundle["text/html"]
    assert bundle["text/plain"].startswith("<GraphView of from_batch; from_batch -> map(Enrich);")


def test_graph_of_an_unknown_job_lists_the_jobs(profile: Any) -> None:
    assert usage_error(profile, "%sage_graph sage_env-1") == (
        "no job 'sage_env-1' in sage_env (jobs: none submitted yet); %sage_graph without a "
        "name follows the latest job"
    )
    ok(profile, PIPELINE + "%sage_submit --no-progress")
    message = usage_error(profile, "%sage_graph nope")
    assert message.startswith(f"no job 'nope' in sage_env (jobs: '{last_job(profile).name}');")


def test_graph_argument_mistakes_end_with_the_usage(shell: Any) -> None:
    message = usage_error(shell, "%sage_graph a b")
    assert message == "unrecognized arguments: b; usage: %sage_graph [job]"


def test_graph_without_ipywidgets_says_what_to_install(
    profile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(profile, PIPELINE)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    message = usage_error(profile, "%sage_graph")
    assert message.startswith("live views need ipywidgets (")
    assert message.endswith('install them: pip install "sage_nb[notebook]"')
    assert usage_error(profile, "%sage_monitor").endswith('pip install "sage_nb[notebook]"')


# -- %sage_monitor -----------------------------------------------------------------------------
def test_monitor_counts_the_calls_of_every_service(profile: Any, shown: Shown) -> None:
    ok(profile, "%%sage_service echo\ndef echo(x):\n    return x\n")
    ok(profile, "%sage_monitor")
    (view,) = open_views()
    assert isinstance(view, MonitorView) and view.names is None
    assert set(view.data()) == {"profile", "echo"}
    for i in range(3):
        ok(profile, f'%sage_call profile "{i}"')
    ok(profile, '%sage_call echo "<script>alert(1)</script>"')
    view.refresh()
    assert view.data()["profile"]["done"] == 3
    assert view.data()["profile"]["failed"] == 0
    assert view.data()["echo"]["done"] == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in view.html  # a result is text
    assert "<script>alert" not in view.html
    assert shown.bundles[0]["text/plain"] == "<MonitorView of sage_env: every service>"


def test_monitor_of_named_services(profile: Any, shown: Shown) -> None:
    ok(profile, "%%sage_service echo\ndef echo(x):\n    return x\n")
    ok(profile, "%sage_monitor echo")
    ok(profile, "%sage_monitor profile,echo echo")
    first, second = open_views()
    assert first.names == ["echo"] and set(first.data()) == {"echo"}
    assert second.names == ["profile", "echo"]  # commas or spaces, each name once
    assert [b["text/plain"] for b in shown.bundles] == [
        "<MonitorView of sage_env: echo>",
        "<MonitorView of sage_env: profile, echo>",
    ]


def test_monitor_of_an_unknown_service_lists_what_exists(profile: Any) -> None:
    assert usage_error(profile, "%sage_monitor profiel") == (
        "no service 'profiel' (registered: 'profile'); define it with %%sage_service profiel, "
        "or run %sage_monitor to watch every service"
    )
    assert not publisher_alive()


def test_monitor_of_an_empty_environment(shell: Any, shown: Shown) -> None:
    assert "registered: none" in usage_error(shell, "%sage_monitor profile")
    ok(shell, "%sage_monitor")  # every service: shows them as they come
    (view,) = open_views()
    assert "no services" in view.html
    ok(shell, PROFILE)
    ok(shell, 'sage_env.call_service("profile", "1")')
    view.refresh()
    assert view.data()["profile"]["done"] == 1


def test_monitor_argument_mistakes_end_with_the_usage(shell: Any) -> None:
    message = usage_error(shell, "%sage_monitor --all")
    assert message == "unrecognized arguments: --all; usage: %sage_monitor [NAME ...]"


# -- %sage_submit's progress -------------------------------------------------------------------
def test_submit_in_a_notebook_shows_live_progress_then_its_final_state(
    profile: Any, shown: Shown, in_kernel: None, capsys: Any
) -> None:
    ok(profile, PIPELINE)
    capsys.readouterr()
    ok(profile, "%sage_submit")
    name = last_job(profile).name
    (bundle,) = shown.bundles
    assert WIDGET_VIEW in bundle  # a live widget ...
    assert 'class="sage-nb-view sage-progress"' in bundle["text/html"]  # ... with a fallback
    # Closed by the cell before the summary: the output becomes the final state, static.
    (final,) = shown.updates
    assert WIDGET_VIEW not in final
    assert f"{name}: finished" in final["text/html"]
    assert "<td>from_batch</td>" in final["text/html"]
    assert "4 / 4 (100.0%)" in final["text/html"]  # done / total per source
    assert final["text/plain"].startswith(f"{name} finished: 4 / 4 records (100.0%), ")
    assert final["text/plain"].endswith(" rec/s")
    assert capsys.readouterr().out.startswith(f"✓ job '{name}' finished")
    assert open_views() == []
    join_publisher()  # its only view closed: the publisher thread ends
    assert not publisher_alive()


def test_progress_shows_each_source_of_a_job(profile: Any, shown: Shown, in_kernel: None) -> None:
    ok(
        profile,
        "left = sage_env.from_batch(list(range(30)))\n"
        "right = sage_env.from_batch(list(range(12)))\n"
        "left.connect(right).comap(lambda x: x, lambda y: -y).sink(lambda r: None)\n"
        "%sage_submit",
    )
    (final,) = shown.updates
    assert "30 / 30 (100.0%)" in final["text/html"]
    assert "12 / 12 (100.0%)" in final["text/html"]
    assert " finished: 42 / 42 records (100.0%), " in final["text/plain"]


def test_progress_of_an_unbounded_source_counts_and_keeps_its_last_state(
    shell: Any, shown: Shown, in_kernel: None
) -> None:
    ok(shell, "import itertools\nsage_env.from_source(itertools.count()).sink(lambda r: None)")
    ok(shell, "%sage_submit --timeout 0.2")
    (final,) = shown.updates
    assert f"{last_job(shell).name}: stopped" in final["text/html"]
    assert "%)" not in final["text/html"]  # no total: a count, no percentage or bar
    assert "ETA" not in final["text/html"]


def test_submit_no_progress_shows_nothing(profile: Any, shown: Shown, in_kernel: None) -> None:
    ok(profile, PIPELINE + "%sage_submit --no-progress")
    assert shown.bundles == [] and shown.updates == []
    assert not publisher_alive()


def test_submit_outside_a_notebook_shows_a_text_line(profile: Any, shown: Shown) -> None:
    ok(profile, PIPELINE + "%sage_submit")
    assert WIDGET_VIEW not in shown.bundles[0]
    assert "finished: 4 / 4 records (100.0%)" in shown.updates[-1]["text/plain"]
    assert not publisher_alive()  # no widget, no publisher


def test_interrupted_submit_leaves_the_progress_as_it_stopped(
    shell: Any, shown: Shown, in_kernel: None
) -> None:
    import _thread

    ok(
        shell,
        "import itertools, threading\n"
        "first = threading.Event()\n"
        "def note(r):\n    first.set()\n"
        "sage_env.from_source(itertools.count()).sink(note)",
    )
    first = shell.user_ns["first"]

    def interrupt() -> None:  # once records flow and the progress is on screen
        if first.wait(10) and shown.widget_shown.wait(10):
            _thread.interrupt_main()

    interrupter = threading.Thread(target=interrupt, name="test-interrupter")
    interrupter.start()
    res = shell.run_cell("%sage_submit", store_history=True)
    interrupter.join(10)
    assert isinstance(res.error_in_exec, KeyboardInterrupt)
    (final,) = shown.updates
    assert f"{last_job(shell).name}: stopped" in final["text/html"]
    assert open_views() == []


# -- the publisher ends with sage_env ------------------------------------------------------------
def test_reset_closes_the_views_and_ends_the_publisher(profile: Any, shown: Shown) -> None:
    ok(profile, PIPELINE)
    ok(profile, "%sage_graph")
    ok(profile, "%sage_monitor")
    graph, monitor = open_views()
    ok(profile, "%sage_reset")
    assert graph.closed and monitor.closed
    assert not publisher_alive()  # joined before %sage_reset returned
    ok(profile, PROFILE + PIPELINE)
    ok(profile, "%sage_graph")  # a view of the new sage_env starts a new publisher
    (view,) = open_views()
    assert view.env is profile.user_ns["sage_env"]
    assert publisher_alive()


def test_reset_keeps_views_of_other_environments(profile: Any, shown: Shown) -> None:
    ok(profile, "%sage_monitor")
    ok(
        profile,
        "from sage_nb import LocalEnvironment\n"
        "from sage_nb.notebook.widgets import MonitorView\n"
        "other = LocalEnvironment('other', keep_services=True)\n"
        "other.register_service('s', lambda: 1)\n"
        "MonitorView(other).show()",
    )
    mine, theirs = open_views()
    ok(profile, "%sage_reset")
    assert mine.closed and not theirs.closed
    assert publisher_alive()
    ok(profile, "other.close()")  # the environment ends: its view closes, so does the thread
    join_publisher()
    assert theirs.closed and not publisher_alive()


def test_unload_ext_closes_every_view_and_ends_the_publisher(profile: Any, shown: Shown) -> None:
    ok(profile, PIPELINE)
    ok(profile, "%sage_graph")
    ok(profile, "%sage_monitor profile")
    views = open_views()
    ok(profile, "%unload_ext sage_nb")
    assert all(v.closed for v in views)
    assert not publisher_alive()
    assert sage_thread_names() == []


def test_kernel_shutdown_closes_every_view_and_ends_the_publisher(
    profile: Any, shown: Shown
) -> None:
    ok(profile, PIPELINE)
    ok(profile, "%sage_graph")
    ok(profile, "%sage_monitor")
    views = open_views()
    runtime = kernel.current()
    assert runtime is not None
    runtime._on_exit_now({"new": True})  # what ipykernel's shutdown handler triggers
    assert all(v.closed for v in views)
    assert not publisher_alive()
    assert sage_thread_names() == []


def test_closed_progress_keeps_nothing_running(profile: Any, in_kernel: None, shown: Shown) -> None:
    ok(profile, PIPELINE + "job = %sage_submit --background")
    job = profile.user_ns["job"]
    assert job.wait(10)
    view = ProgressView(job)
    view.show()
    join_publisher()  # the job is over: the view closes itself, the thread ends
    assert view.closed and not publisher_alive()
