"""The four figures. Each interleaves floor and sage_nb runs in rounds, so the machine's drift
(this kind of machine swings ~3x) hits both sides alike."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import floors, runtime
from .report import Figure, Goal, micro
from .timing import quiet, summarize_ns

__all__ = ["Sizes", "async_throughput", "enrich_pipeline", "map_pipeline", "sync_call"]


@dataclass(frozen=True)
class Sizes:
    sync_calls: int = 20_000  # round trips per measurement
    sync_rounds: int = 5
    sync_block: int = 1_000  # round trips per interleaved block
    async_calls: int = 50_000  # per window size, spread over the rounds
    async_rounds: int = 10
    pipeline_records: int = 100_000
    pipeline_reps: int = 21
    enrich_records: int = 10_000
    enrich_reps: int = 5
    warmup: int = 2_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            sync_calls=2_000,
            sync_rounds=3,
            sync_block=500,
            async_calls=6_000,
            async_rounds=3,
            pipeline_records=10_000,
            pipeline_reps=5,
            enrich_records=1_000,
            enrich_reps=3,
            warmup=200,
        )


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


# -- 1. sync call round trip ----------------------------------------------------------------
def _interleaved_round(
    floor_call: Callable[[int], list[int]],
    sage_call: Callable[[int], list[int]],
    n: int,
    block: int,
) -> tuple[list[int], list[int], dict[str, list[float]]]:
    """One round: ``n`` sage_nb round trips and ``n`` floor round trips, in blocks.

    Order: floor (half a block), then sage / floor blocks alternately, ending with a floor
    half block, so every sage block is bracketed by floor runs just before and just after it.
    Returns (sage samples, floor samples, and for p50 and p99 the ratio of each sage block's
    percentile to the mean of its two neighbouring floor blocks' percentiles).
    """
    blocks = max(1, n // block)
    size = n // blocks
    half = size // 2
    sage: list[int] = []
    floor: list[int] = floor_call(half)
    before = summarize_ns(floor)
    block_ratios: dict[str, list[float]] = {"p50": [], "p99": []}
    for k in range(blocks):
        s = sage_call(size)
        f = floor_call(size if k < blocks - 1 else size - half)
        ss, after = summarize_ns(s), summarize_ns(f)
        for q, ratios in block_ratios.items():
            ratios.append(ss[q] / ((before[q] + after[q]) / 2))
        before = after
        sage += s
        floor += f
    return sage, floor, block_ratios


def sync_call(sizes: Sizes) -> list[Figure]:
    """``env.call_service("echo", x)`` against a raw ``queue.Queue`` ping-pong.

    Both "services" are started once and live through the whole figure. Each round measures
    ``sync_calls`` round trips of each in interleaved blocks (``_interleaved_round``): every
    sage_nb block is compared with the floor blocks just before and just after it, which
    cancels the machine's drift. A round's ratio is the median of its block ratios; the
    reported ratio is the median over rounds. The absolute values are each round's p50 / p99
    over all its samples, median over rounds.
    """
    n = sizes.sync_calls
    server = floors.PingPongServer()
    env = runtime.echo_environment("bench-sync")
    rounds: list[tuple[dict[str, float], dict[str, float], dict[str, list[float]]]] = []
    try:
        server.samples(sizes.warmup)
        runtime.sync_samples(env, sizes.warmup)
        for _ in range(sizes.sync_rounds):
            quiet()
            sage, floor, block_ratios = _interleaved_round(
                server.samples, lambda k: runtime.sync_samples(env, k), n, sizes.sync_block
            )
            rounds.append((summarize_ns(sage), summarize_ns(floor), block_ratios))
            del sage, floor
    finally:
        env.close()
        server.close()
    us = micro()
    figures = []
    for q, goal in (("p50", Goal("<=", 1.0)), ("p99", None)):
        sage_q = [s[q] for s, _, _ in rounds]
        floor_q = [f[q] for _, f, _ in rounds]
        ratios = [_median(b[q]) for _, _, b in rounds]
        figures.append(
            Figure(
                key=f"sync_{q}",
                label=f"sync call {q}",
                value=_median(sage_q),
                floor=_median(floor_q),
                unit=us,
                ratio=_median(ratios),
                floor_label="raw queue ping-pong",
                goal=goal,
                detail={
                    "round_trips_per_round": n,
                    "rounds": sizes.sync_rounds,
                    "block": sizes.sync_block,
                    "reduction": "median over rounds of (median over blocks of sage block / "
                    "mean of the floor blocks before and after it)",
                    "ratios": ratios,
                    "pooled_ratios": [s / f for s, f in zip(sage_q, floor_q)],
                    "sage_us": sage_q,
                    "floor_us": floor_q,
                    "sage_mean_us": [s["mean"] for s, _, _ in rounds],
                    "floor_mean_us": [f["mean"] for _, f, _ in rounds],
                },
            )
        )
    return figures


# -- 2. async throughput --------------------------------------------------------------------
def async_throughput(sizes: Sizes, windows: tuple[int, ...] = (64, 1024)) -> list[Figure]:
    """``call_service_async`` with a sliding window of calls in flight, against sync calls
    wrapped in ``ThreadPoolExecutor(max_workers=10)`` with the same window.

    Rounds alternate which side runs first; the ratio is the median of per-round ratios, the
    rates are total calls / total time of each side.
    """
    per_round = max(1, sizes.async_calls // sizes.async_rounds)
    env = runtime.echo_environment("bench-async")
    pool = ThreadPoolExecutor(max_workers=10, thread_name_prefix="bench/pool")
    figures = []
    try:
        floors.threadpool_window(pool, env.call_service, sizes.warmup, 64)
        runtime.async_window(env, sizes.warmup, 64)
        for window in windows:
            sage_t: list[float] = []
            pool_t: list[float] = []
            for r in range(sizes.async_rounds):
                runs: list[tuple[list[float], Callable[[], float]]] = [
                    (pool_t, lambda w=window: floors.threadpool_window(
                        pool, env.call_service, per_round, w
                    )),
                    (sage_t, lambda w=window: runtime.async_window(env, per_round, w)),
                ]  # fmt: skip
                if r % 2:
                    runs.reverse()
                for sink, run in runs:
                    quiet()
                    sink.append(run())
            total = per_round * sizes.async_rounds
            ratios = [p / s for p, s in zip(pool_t, sage_t)]
            figures.append(
                Figure(
                    key=f"async_{window}",
                    label=f"async {window} in flight",
                    value=total / sum(sage_t) / 1e3,
                    floor=total / sum(pool_t) / 1e3,
                    unit="k calls/s",
                    ratio=_median(ratios),
                    floor_label="10-thread pool of sync calls",
                    goal=Goal(">=", 3.0) if window == 1024 else None,
                    detail={
                        "calls_per_round": per_round,
                        "rounds": sizes.async_rounds,
                        "reduction": "median over rounds of pool time / sage time",
                        "ratios": ratios,
                        "sage_seconds": sage_t,
                        "floor_seconds": pool_t,
                    },
                )
            )
    finally:
        pool.shutdown(wait=True)
        env.close()
    return figures


# -- 3. pipeline throughput -----------------------------------------------------------------
def map_pipeline(sizes: Sizes) -> list[Figure]:
    """``from_batch(data).map(f).map(g).sink(out.append)`` against a plain loop; best of
    ``pipeline_reps`` interleaved repetitions each, ``env.submit()`` (compile included)."""
    n = sizes.pipeline_records
    data = list(range(n))
    expected = [(r + 1) * 2 for r in data]

    def f(x: Any) -> Any:
        return x + 1

    def g(x: Any) -> Any:
        return x * 2

    def check(out: list[Any]) -> None:
        if out != expected:
            raise AssertionError("pipeline produced wrong records")

    loop_t: list[float] = []
    sage_t: list[float] = []
    floors.plain_loop(data[: sizes.warmup], f, g)
    runtime.map_map_pipeline(data[: sizes.warmup], f, g)
    for r in range(sizes.pipeline_reps + 1):
        runs: list[tuple[list[float], Callable[[], tuple[float, list[Any]]]]] = [
            (loop_t, lambda: floors.plain_loop(data, f, g)),
            (sage_t, lambda: runtime.map_map_pipeline(data, f, g)),
        ]
        if r % 2:
            runs.reverse()
        for sink, run in runs:
            quiet()
            took, out = run()
            check(out)
            if r:  # the first repetition is a warm-up
                sink.append(took)
            del out
    best_loop, best_sage = min(loop_t), min(sage_t)
    paired = [lo / sa for lo, sa in zip(loop_t, sage_t)]
    return [
        Figure(
            key="pipeline",
            label=f"pipeline {_count(n)} rec",
            value=n / best_sage / 1e6,
            floor=n / best_loop / 1e6,
            unit="M rec/s",
            ratio=best_loop / best_sage,
            floor_label="plain loop",
            goal=Goal(">=", 0.7),
            note=f"[median of paired runs {_median(paired):.2f}x]",
            detail={
                "records": n,
                "repetitions": sizes.pipeline_reps,
                "reduction": "best loop time / best sage time (throughput ratio)",
                "paired_ratios": paired,
                "sage_seconds": sage_t,
                "floor_seconds": loop_t,
            },
        )
    ]


# -- 4. one service call per record ---------------------------------------------------------
def enrich_pipeline(sizes: Sizes) -> list[Figure]:
    """``from_batch(data).map(Enrich()).sink(out.append)`` (a sync ``echo`` call per record)
    against source → mapper → sink threads on ``queue.Queue``s with a ping-pong service thread.
    Both services live across repetitions; best of ``enrich_reps`` interleaved repetitions."""
    n = sizes.enrich_records
    data = list(range(n))
    env = runtime.echo_environment("bench-enrich")
    server = floors.PingPongServer("bench/raw-service")
    raw_t: list[float] = []
    sage_t: list[float] = []
    try:
        floors.raw_service_pipeline(data[: sizes.warmup], server)
        runtime.enrich_pipeline(env, data[: sizes.warmup])
        for r in range(sizes.enrich_reps):
            runs: list[tuple[list[float], Callable[[], tuple[float, list[Any]]]]] = [
                (raw_t, lambda: floors.raw_service_pipeline(data, server)),
                (sage_t, lambda: runtime.enrich_pipeline(env, data)),
            ]
            if r % 2:
                runs.reverse()
            for sink, run in runs:
                quiet()
                took, out = run()
                if sorted(out) != data:
                    raise AssertionError("service pipeline produced wrong records")
                sink.append(took)
    finally:
        env.close()
        server.close()
    best_raw, best_sage = min(raw_t), min(sage_t)
    paired = [s / r for s, r in zip(sage_t, raw_t)]
    return [
        Figure(
            key="enrich",
            label=f"{_count(n)} service calls",
            value=best_sage * 1e3,
            floor=best_raw * 1e3,
            unit="ms",
            ratio=best_sage / best_raw,
            floor_label="raw 3-thread pipeline",
            goal=Goal("<=", 0.8),
            note=f"[median of paired runs {_median(paired):.2f}x]",
            detail={
                "records": n,
                "repetitions": sizes.enrich_reps,
                "reduction": "best sage time / best raw time",
                "paired_ratios": paired,
                "sage_seconds": sage_t,
                "floor_seconds": raw_t,
            },
        )
    ]


def _count(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)
