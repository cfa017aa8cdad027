"""Live views: their model values after known events, escaping, fallbacks and the publisher."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from support import WIDGET_VIEW, wait_until

from sage_nb import LocalEnvironment, MapFunction
from sage_nb.errors import ServiceCallError
from sage_nb.notebook.widgets import GraphView, MonitorView, ProgressView, publisher


@pytest.fixture
def wenv() -> Iterator[LocalEnvironment]:
    env = LocalEnvironment("widgets", keep_services=True)
    yield env
    env.close()
    publisher().stop()


class Enrich(MapFunction):
    def execute(self, record: int) -> dict[str, object]:
        return {"id": record, "profile": self.call_service("profile", record)}


def build(env: LocalEnvironment, n: int, out: list[object]) -> None:
    env.register_service("profile", lambda i: {"age": i % 50})
    (
        env.from_batch(list(range(n)))
        .map(Enrich())
        .filter(lambda r: r["profile"]["age"] % 2 == 0)
        .keyby(lambda r: r["profile"]["age"])
        .map(lambda r: r["id"], parallelism=2)
        .sink(out.append)
    )


def test_graph_counts_nodes_edges_and_service_calls(wenv: LocalEnvironment) -> None:
    out: list[object] = []
    build(wenv, 1000, out)
    view = GraphView(wenv)
    assert view.model.title.endswith("not submitted yet")
    assert {n.label for n in view.model.nodes} >= {"from_batch", "map(Enrich)", "profile"}
    wenv.submit()
    view.refresh()
    data = view.model.data
    assert data["from_batch"]["records_out"] == 1000
    assert data["map(Enrich)"]["calls"] == ["profile"]
    assert data["filter(lambda)"] == {
        "records_in": 1000,
        "records_out": 500,
        "errors": 0,
        "parallelism": 1,
        "calls": [],
    }
    assert data["map(lambda)"]["parallelism"] == 2
    assert data["sink(append)"]["records_in"] == len(out) == 500
    assert data["service:profile"]["done"] == 1000
    calls = [e for e in view.model.edges if e.kind == "call"]
    enrich = f"n{_id(view, 'map(Enrich)')}"
    assert [(e.source, e.target) for e in calls] == [(enrich, "s:profile")]
    keyed = [e for e in view.model.edges if e.label.startswith("keyed")]
    assert len(keyed) == 1
    assert 'class="sage-node sage-node-service"' in view.html
    assert "map(lambda) x2" in view.html


def _id(view: GraphView, label: str) -> int:
    (node,) = [n for n in view.model.nodes if n.label.startswith(label)]
    return int(node.key[1:])


def test_job_graph_follows_its_job_and_closes_when_it_ends(wenv: LocalEnvironment) -> None:
    out: list[object] = []
    build(wenv, 200, out)
    job = wenv.submit()
    view = job.graph()
    assert view.job is job
    view.refresh()
    assert view.closed  # the job is over: the view is final
    assert view.model.data["sink(append)"]["records_in"] == 100


def test_monitor_counts_done_failed_timed_out_and_retries(wenv: LocalEnvironment) -> None:
    gate = threading.Event()

    class Svc:
        def process(self, x: object) -> object:
            if x == "boom":
                raise ValueError("<b>bad</b>")
            if x == "wait":
                gate.wait(5)
            return x

    wenv.register_service("svc", Svc)
    view = MonitorView(wenv)
    for i in range(5):
        wenv.call_service("svc", i)
    with pytest.raises(ServiceCallError):
        wenv.call_service("svc", "boom")
    with pytest.raises(TimeoutError):
        wenv.call_service("svc", "wait", timeout=0.05)
    gate.set()
    assert wait_until(lambda: not (view.refresh(), view.data()["svc"]["in_flight"])[1])
    numbers = view.data()["svc"]
    # Each call has exactly one outcome: the "wait" call timed out for its caller, and its
    # late answer is dropped, not counted as done too.
    assert numbers["done"] == 5
    assert numbers["failed"] == 1
    assert numbers["timed_out"] == 1
    assert numbers["retries"] == 0
    assert numbers["p50"] is not None
    assert "ValueError" in view.html
    assert "<b>bad</b>" not in view.html


def test_values_are_escaped_never_markup(wenv: LocalEnvironment) -> None:
    wenv.register_service("evil", lambda s: s)
    wenv.call_service("evil", "<script>alert(1)</script>")
    monitor = MonitorView(wenv)
    assert "<script>alert" not in monitor.html
    assert "&lt;script&gt;alert" in monitor.html
    wenv.from_batch(["<script>x</script>"]).map(lambda s: s, name="<img src=x onerror=1>").sink(
        lambda s: None
    )
    graph = GraphView(wenv)
    assert "<img src=x" not in graph.html
    assert "&lt;img src=x" in graph.html


def test_output_bundle_has_widget_and_static_fallback(wenv: LocalEnvironment) -> None:
    wenv.register_service("s", lambda: 1)
    view = MonitorView(wenv)
    bundle = view._repr_mimebundle_()
    assert WIDGET_VIEW in bundle
    assert bundle[WIDGET_VIEW]["model_id"] == view.widget.model_id
    assert bundle["text/html"] == view.html == view.widget.value
    assert bundle["text/plain"].startswith("<MonitorView")


def test_progress_view_reaches_the_total_and_closes(wenv: LocalEnvironment) -> None:
    wenv.from_batch(list(range(300))).sink(lambda r: None)
    job = wenv.submit()
    view = ProgressView(job)
    assert "300 / 300 (100.0%)" in view.html
    view.refresh()
    assert view.closed


def test_publisher_refreshes_while_busy_and_sleeps_when_quiet(wenv: LocalEnvironment) -> None:
    gate = threading.Event()
    wenv.register_service("slow", lambda: gate.wait(5))
    view = MonitorView(wenv)
    view._repr_mimebundle_()  # displayed: the publisher starts
    pub = publisher()
    threads = [t for t in threading.enumerate() if t.name == "sage_nb/publisher"]
    assert len(threads) == 1 and threads[0].daemon
    # Quiet: the publisher arms the activity signal and waits for it.
    assert wait_until(lambda: wenv.activity.armed)
    before = view.updates
    future = wenv.call_service_async("slow")  # fires the signal: the view updates
    assert wait_until(lambda: view.updates > before)
    assert wait_until(lambda: view.data()["slow"]["in_flight"] == 1)
    gate.set()
    assert future.result(timeout=5) is True
    assert wait_until(lambda: view.data()["slow"]["done"] == 1)
    assert wait_until(lambda: wenv.activity.armed)  # quiet again
    assert pub.views == [view]


def test_publisher_ends_when_the_environment_closes() -> None:
    env = LocalEnvironment("short-lived", keep_services=True)
    env.register_service("s", lambda: 1)
    view = MonitorView(env)
    view._repr_mimebundle_()
    assert wait_until(lambda: any(t.name == "sage_nb/publisher" for t in threading.enumerate()))
    env.close()
    assert wait_until(lambda: view.closed)
    assert wait_until(lambda: not any(t.name == "sage_nb/publisher" for t in threading.enumerate()))


def test_a_closing_view_keeps_a_fresh_state_not_its_last_frame(wenv: LocalEnvironment) -> None:
    # Before: the frozen copy was the last frame drawn, so a monitor closed by %sage_reset
    # still said "running", and two views closed together could disagree on the counts.
    wenv.register_service("svc", lambda x: x)
    wenv.call_service("svc", 1)
    view = MonitorView(wenv)
    assert "running" in view.html
    wenv.call_service("svc", 2)  # after the last frame: the frozen copy must count it
    wenv.close()
    view.close()
    assert view.closed
    assert 'sage-state">stopped<' in view.html
    assert 'sage-done">2<' in view.html


def test_graph_scales_to_its_output_and_labels_never_cross_a_box() -> None:
    import re

    from sage_nb.notebook.widgets import render

    model = render.GraphModel(title="t")
    for i, (kind, label) in enumerate(
        [
            ("source", "from_batch"),
            ("map", "map(Enrich) x4"),
            ("map", "map(lambda) x2"),
            ("sink", "sink(count)"),
        ]
    ):
        model.nodes.append(
            render.NodeView(
                f"n{i}", label, kind, ["in 1,000,000 · out 999,999"], "running", layer=i
            )
        )
    for i in range(3):  # the longest labels a running job shows
        model.edges.append(
            render.EdgeView(f"n{i}", f"n{i + 1}", "data", "broadcast · q 123,456 · 12.3k rec/s")
        )
    html = render.graph_svg(model)
    svg = re.search(r"<svg [^>]*>", html)
    assert svg is not None
    assert 'width="100%"' in svg.group(0) and "height:auto" in svg.group(0)  # scales, never clips
    boxes = [
        (float(x), float(y), float(w), float(h))
        for x, y, w, h in re.findall(
            r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)"', html
        )
    ]
    labels = re.findall(
        r'<text x="(\d+)" y="(\d+)" text-anchor="middle" font-size="10"[^>]*>([^<]*)<', html
    )
    assert len(labels) == 6  # two lines per edge
    for x, y, text in labels:
        half = len(text) * 6 / 2  # ~6 px a character at 10 px, generously
        left, right, top, bottom = float(x) - half, float(x) + half, float(y) - 10, float(y)
        for bx, by, bw, bh in boxes:
            overlaps = left < bx + bw and right > bx and top < by + bh and bottom > by
            assert not overlaps, (text, (left, right), (bx, bx + bw))


def test_the_latency_history_has_an_axis() -> None:
    # Before: a bare polyline that read as an underline, with no scale.
    from sage_nb.notebook.widgets import render

    svg = render.sparkline_svg([0.001, 0.002, 0.004])
    assert 'class="sage-axis-max"' in svg and ">4.00 ms<" in svg
    assert 'class="sage-axis-min"' in svg and ">0<" in svg
    assert svg.count("<line ") == 2  # the y axis and the baseline
    assert render.sparkline_svg([0.5]).startswith('<svg class="sage-sparkline"')
