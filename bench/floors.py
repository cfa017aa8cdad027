"""Raw baselines: what the same work costs with plain threads, queues and loops.

Nothing here imports sage_nb except the thread-pool baseline, which wraps ``env.call_service``
the way the reference's ``call_service_async`` does.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .timing import sliding_window, time_each

__all__ = [
    "PingPongServer",
    "plain_loop",
    "raw_service_pipeline",
    "threadpool_window",
]

_STOP: Any = object()
_END: Any = object()


class PingPongServer:
    """A "service" thread: gets each request from ``requests``, puts it back on ``responses``.

    Started once and kept for a whole figure, like a sage_nb service kept running between calls.
    ``call(x)`` is the client's side of one round trip: ``requests.put(x); responses.get()``.
    """

    def __init__(self, name: str = "bench/pingpong") -> None:
        self.requests: queue.Queue[Any] = queue.Queue()
        self.responses: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        put, get = self.requests.put, self.responses.get

        def call(x: Any) -> Any:
            put(x)
            return get()

        self.call: Callable[[Any], Any] = call

    def _serve(self) -> None:
        get, put = self.requests.get, self.responses.put
        while True:
            x = get()
            if x is _STOP:
                return
            put(x)

    def samples(self, n: int) -> list[int]:
        """Per-round-trip durations (ns) of ``n`` ping-pongs."""
        return time_each(self.call, n)

    def close(self, timeout: float = 5.0) -> None:
        self.requests.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():  # pragma: no cover - the loop above always ends
            raise RuntimeError("ping-pong server thread did not stop")

    def __enter__(self) -> PingPongServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def threadpool_window(pool: ThreadPoolExecutor, call: Callable[..., Any], n: int, window: int):
    """Async calls the reference's way: sync ``call("echo", i)`` wrapped in a thread pool, with
    ``window`` of them outstanding. Returns the wall time in seconds."""
    submit = pool.submit
    return sliding_window(lambda i: submit(call, "echo", i), n, window)


def plain_loop(data: Sequence[Any], f: Callable[[Any], Any], g: Callable[[Any], Any]):
    """``for r in data: out.append(g(f(r)))``; returns (seconds, out)."""
    out: list[Any] = []
    start = time.perf_counter()
    for r in data:
        out.append(g(f(r)))
    return time.perf_counter() - start, out


def raw_service_pipeline(data: Sequence[Any], service: PingPongServer):
    """Source, mapper and sink threads joined by ``queue.Queue``s; the mapper makes one
    ping-pong with ``service`` (a thread that lives across runs) per record.

    The three pipeline threads are started and joined inside the timed region, as sage_nb's
    tasks are inside ``env.submit()``. Returns (seconds, out).
    """
    q1: queue.Queue[Any] = queue.Queue()
    q2: queue.Queue[Any] = queue.Queue()
    out: list[Any] = []
    call = service.call

    def source() -> None:
        put = q1.put
        for r in data:
            put(r)
        put(_END)

    def mapper() -> None:
        get, put = q1.get, q2.put
        while True:
            r = get()
            if r is _END:
                put(_END)
                return
            put(call(r))

    def sink() -> None:
        get, append = q2.get, out.append
        while True:
            r = get()
            if r is _END:
                return
            append(r)

    threads = [
        threading.Thread(target=fn, name=f"bench/raw-{fn.__name__}", daemon=True)
        for fn in (source, mapper, sink)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, out
