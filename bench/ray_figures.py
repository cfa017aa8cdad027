"""``python -m bench.ray_figures [--quick]``: sage_nb's Ray backend against raw Ray actor calls,
measured in this one process on one local Ray cluster.

Both sides call an actor whose method returns its argument: the floor calls it directly
(``ray.get(actor.process.remote(x))``), sage_nb through a ``RemoteEnvironment`` service
(``env.call_service``), which adds the request queue, the forwarder thread, deadlines and
statistics. Run it unpinned: ``taskset`` would pin the Ray cluster that this process starts
to the same CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .report import Figure, Goal, micro
from .timing import quiet, sliding_window, summarize_ns, time_each

__all__ = ["RaySizes", "main", "ray_figures"]


@dataclass(frozen=True)
class RaySizes:
    latency_calls: int = 2_000  # per round and side
    latency_block: int = 250
    rounds: int = 5
    throughput_calls: int = 20_000  # per round and side
    window: int = 1_024
    warmup: int = 300

    @classmethod
    def quick(cls) -> RaySizes:
        return cls(
            latency_calls=300,
            latency_block=100,
            rounds=2,
            throughput_calls=2_000,
            window=256,
            warmup=50,
        )


class Echo:
    def process(self, x: Any) -> Any:
        return x


def _raw_window(actor: Any, ray: Any, n: int, window: int) -> float:
    """Raw Ray: keep ``window`` calls in flight until ``n`` completed; seconds taken."""
    pending: deque[tuple[int, Any]] = deque()
    start = time.perf_counter()
    for i in range(min(window, n)):
        pending.append((i, actor.process.remote(i)))
    for i in range(min(window, n), n):
        j, ref = pending.popleft()
        if ray.get(ref) != j:
            raise AssertionError(f"call {j} returned a wrong result")
        pending.append((i, actor.process.remote(i)))
    while pending:
        j, ref = pending.popleft()
        if ray.get(ref) != j:
            raise AssertionError(f"call {j} returned a wrong result")
    return time.perf_counter() - start


def ray_figures(sizes: RaySizes) -> list[Figure]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from sage_nb import RemoteEnvironment

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    raw = ray.remote(Echo).options(max_concurrency=1).remote()
    env = RemoteEnvironment("bench-ray")
    env.register_service("echo", Echo)
    try:

        def raw_call(i: int) -> Any:
            return ray.get(raw.process.remote(i))

        def sage_call(i: int) -> Any:
            return env.call_service("echo", i)

        time_each(raw_call, sizes.warmup)
        time_each(sage_call, sizes.warmup)
        lat_rounds: list[tuple[dict[str, float], dict[str, float], list[float]]] = []
        for r in range(sizes.rounds):
            quiet()
            sage: list[int] = []
            floor: list[int] = []
            block_ratios = []
            for b in range(max(1, sizes.latency_calls // sizes.latency_block)):
                order = [(floor, raw_call), (sage, sage_call)]
                if (r + b) % 2:
                    order.reverse()
                got = {}
                for samples, call in order:
                    block = time_each(call, sizes.latency_block)
                    samples += block
                    got[id(samples)] = summarize_ns(block)["p50"]
                block_ratios.append(got[id(sage)] / got[id(floor)])
            lat_rounds.append((summarize_ns(sage), summarize_ns(floor), block_ratios))

        sage_t: list[float] = []
        raw_t: list[float] = []
        n, w = sizes.throughput_calls, sizes.window

        def sage_submit(i: int) -> Any:
            return env.call_service_async("echo", i)

        sliding_window(sage_submit, sizes.warmup, w)
        _raw_window(raw, ray, sizes.warmup, w)
        for r in range(sizes.rounds):
            runs = [(raw_t, lambda: _raw_window(raw, ray, n, w)),
                    (sage_t, lambda: sliding_window(sage_submit, n, w))]  # fmt: skip
            if r % 2:
                runs.reverse()
            for sink, run in runs:
                quiet()
                sink.append(run())
    finally:
        env.close()
        ray.kill(raw)
        if started:
            ray.shutdown()

    import statistics

    med = statistics.median
    us = micro()
    figures = []
    for q, goal in (("p50", Goal("<=", 1.2)), ("p99", None)):
        sage_q = [s[q] for s, _, _ in lat_rounds]
        floor_q = [f[q] for _, f, _ in lat_rounds]
        ratios = (
            [med(b) for _, _, b in lat_rounds]
            if q == "p50"
            else [s / f for s, f in zip(sage_q, floor_q)]
        )
        figures.append(
            Figure(
                key=f"ray_sync_{q}",
                label=f"Ray call {q}",
                value=med(sage_q),
                floor=med(floor_q),
                unit=us,
                ratio=med(ratios),
                floor_label="raw ray.get(actor.m.remote())",
                goal=goal,
                detail={"ratios": ratios, "sage_us": sage_q, "floor_us": floor_q},
            )
        )
    ratios = [f / s for f, s in zip(raw_t, sage_t)]
    total = n * sizes.rounds
    figures.append(
        Figure(
            key="ray_throughput",
            label=f"Ray {w} in flight",
            value=total / sum(sage_t) / 1e3,
            floor=total / sum(raw_t) / 1e3,
            unit="k calls/s",
            ratio=med(ratios),
            floor_label=f"raw actor calls, {w} in flight",
            goal=Goal(">=", 0.9),
            detail={"ratios": ratios, "sage_seconds": sage_t, "floor_seconds": raw_t},
        )
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_figures", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args(argv)
    sizes = RaySizes.quick() if args.quick else RaySizes()
    print(
        "sage_nb Ray bench: every figure is sage_nb / raw Ray measured in this process "
        "(one local cluster, num_cpus=2)",
        flush=True,
    )
    start = time.perf_counter()
    results = ray_figures(sizes)
    for fig in results:
        print(fig.line(), flush=True)
    missed = [f.label for f in results if f.ok is False]
    print(
        f"{len(results)} figures in {time.perf_counter() - start:.1f} s; goals missed: "
        f"{', '.join(missed) if missed else 'none'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
