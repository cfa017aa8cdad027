"""Live views in a real kernel (jupyter_client): what a front end receives.

Each view is a ``display_data`` with the widget and a static ``text/html`` under a display id;
when it closes (the job ended, ``%sage_reset``, ``%unload_ext``) an ``update_display_data``
for that id replaces it with the static HTML alone, sent from the cell that closed it. The
``sage_nb/publisher`` thread ends with the last view.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from notebook_helpers import KernelSession
from support import WIDGET_VIEW

SETUP = """
import threading
from sage_nb import MapFunction

def publisher_threads():
    return [t.name for t in threading.enumerate() if t.name == "sage_nb/publisher"]

class Enrich(MapFunction):
    def execute(self, i):
        return self.call_service("profile", i)

sage_env.register_service("profile", lambda i: {"id": i})
out = []
sage_env.from_batch(list(range(500))).map(Enrich()).sink(out.append)
"""


@pytest.fixture
def session(kernel: KernelSession) -> Iterator[KernelSession]:
    kernel.execute(SETUP)
    try:
        yield kernel
    finally:
        kernel.execute("%sage_reset")


def displays(messages: list[dict[str, Any]], kind: str = "display_data") -> list[dict[str, Any]]:
    return [m["content"] for m in messages if m["msg_type"] == kind]


def test_views_are_widgets_that_become_static_on_reset(session: KernelSession) -> None:
    (graph,) = displays(session.execute("%sage_graph").messages)
    (monitor,) = displays(session.execute("%sage_monitor profile").messages)
    for shown, css in ((graph, "sage-graph"), (monitor, "sage-monitor")):
        assert WIDGET_VIEW in shown["data"]
        assert f'class="sage-nb-view {css}"' in shown["data"]["text/html"]
        assert shown["transient"]["display_id"]
    assert session.value("publisher_threads()") == ["sage_nb/publisher"]

    reset = session.execute("%sage_reset")
    updates = {
        u["transient"]["display_id"]: u["data"]
        for u in displays(reset.messages, "update_display_data")
    }
    for shown in (graph, monitor):
        final = updates[shown["transient"]["display_id"]]
        assert WIDGET_VIEW not in final  # only the static markup is left
        assert final["text/html"].startswith("<style>")
    assert updates[monitor["transient"]["display_id"]]["text/plain"] == (
        "<MonitorView of sage_env: profile>"
    )
    assert session.value("publisher_threads()") == []
    session.execute(SETUP)  # for the fixture's own %sage_reset


def test_submit_progress_ends_static_above_the_summary(session: KernelSession) -> None:
    messages = session.execute("%sage_submit").messages
    kinds = [m["msg_type"] for m in messages]
    (shown,) = displays(messages)
    (final,) = displays(messages, "update_display_data")
    assert WIDGET_VIEW in shown["data"]
    assert final["transient"]["display_id"] == shown["transient"]["display_id"]
    assert WIDGET_VIEW not in final["data"]
    assert "500 / 500 (100.0%)" in final["data"]["text/html"]
    assert " finished: 500 / 500 records (100.0%), " in final["data"]["text/plain"]
    summary = next(
        i
        for i, m in enumerate(messages)
        if m["msg_type"] == "stream" and "✓ job" in m["content"]["text"]
    )
    assert kinds.index("update_display_data") < summary  # closed before the summary prints
    assert session.value("publisher_threads()") == []  # its only view closed


def test_submit_without_progress_displays_nothing(session: KernelSession) -> None:
    messages = session.execute("%sage_submit --no-progress").messages
    assert displays(messages) == [] and displays(messages, "update_display_data") == []


def test_unload_ext_ends_the_publisher(session: KernelSession) -> None:
    session.execute("%sage_monitor")
    unload = session.execute("%unload_ext sage_nb")
    (final,) = displays(unload.messages, "update_display_data")
    assert WIDGET_VIEW not in final["data"]
    assert session.value("publisher_threads()") == []
    session.execute("%load_ext sage_nb\n" + SETUP)
