"""Figure 5: pipeline throughput while the live graph and monitor are displayed, as a ratio to
the same pipeline with no view open. The views refresh from the publisher thread (at most 10
times a second), which competes with the pipeline for the interpreter: this measures that."""

from __future__ import annotations

import statistics
import time
from typing import Any

from sage_nb import LocalEnvironment, MapFunction

from .report import Figure, Goal
from .timing import quiet

__all__ = ["widget_overhead"]


class _Enrich(MapFunction):
    def execute(self, record: int) -> tuple[int, Any]:
        return record, self.call_service("profile", record)


def _run(env: LocalEnvironment, data: list[int], views: bool) -> float:
    from sage_nb.notebook.widgets import GraphView, MonitorView, publisher

    out: list[Any] = []
    env.clear_pipeline()
    (
        env.from_batch(data)
        .map(_Enrich())
        .keyby(lambda r: r[0] % 8)
        .map(lambda r: r[1], parallelism=2)
        .sink(out.append)
    )
    opened = []
    if views:
        opened = [GraphView(env), MonitorView(env)]
        for view in opened:
            view._repr_mimebundle_()  # what displaying it in a cell does: publish it
    start = time.perf_counter()
    env.submit()
    took = time.perf_counter() - start
    for view in opened:
        view.close()
    publisher().stop()
    if len(out) != len(data):
        raise AssertionError("the pipeline lost records")
    return took


def widget_overhead(sizes: Any) -> list[Figure]:
    """Best of interleaved repetitions with and without the views, same environment."""
    n = max(2_000, sizes.enrich_records * 2)
    reps = max(3, sizes.enrich_reps)
    data = list(range(n))
    env = LocalEnvironment("bench-widgets", keep_services=True)
    env.register_service("profile", lambda i: {"age": i % 50})
    try:
        _run(env, data[:500], views=False)
        _run(env, data[:500], views=True)
        plain: list[float] = []
        shown: list[float] = []
        for r in range(reps):
            order = [(plain, False), (shown, True)]
            if r % 2:
                order.reverse()
            for bucket, views in order:
                quiet()
                bucket.append(_run(env, data, views))
    finally:
        env.close()
    best_plain, best_shown = min(plain), min(shown)
    paired = [p / s for p, s in zip(plain, shown)]
    return [
        Figure(
            key="widgets",
            label="with graph+monitor",
            value=n / best_shown / 1e3,
            floor=n / best_plain / 1e3,
            unit="k rec/s",
            ratio=best_plain / best_shown,
            floor_label="no view open",
            goal=Goal(">=", 0.95),
            note=f"[median of paired runs {statistics.median(paired):.2f}x]",
            detail={"records": n, "repetitions": reps, "plain": plain, "shown": shown},
        )
    ]
