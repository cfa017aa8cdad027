"""The chaos driver of ``tests/reliability/test_chaos.py`` (threads) and
``tests/backends/test_ray_chaos.py`` (Ray actors).

``run_chaos`` keeps ``in_flight`` async calls outstanding for ``duration`` seconds while a chaos
thread swaps, stops (the next call restarts it, through a slow ``setup()``) and kills the
service, and the calling thread samples a status report. It returns what the callers saw and
the status timings; the tests check that every call is accounted for exactly once.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sage_nb.errors import SageError, ServiceCallError, ServiceTimeoutError


class ChaosModel:
    """A service with a slow, variable ``setup()``; ``process`` is quick, fails some inputs
    and kills its worker on others (``SystemExit``: on threads the worker restarts)."""

    def __init__(self, setup_seconds: float = 0.3, die_every: int = 0) -> None:
        self.setup_seconds = setup_seconds
        self.die_every = die_every

    def setup(self) -> None:
        threading.Event().wait(random.uniform(0, self.setup_seconds))

    def process(self, x: int) -> int:
        if self.die_every and x % self.die_every == 0:
            raise SystemExit(f"worker killed on {x}")
        if x % 13 == 0:
            raise ValueError(f"bad input {x}")
        if x % 5 == 0:
            threading.Event().wait(0.002)
        return 2 * x


@dataclass
class ChaosResult:
    made: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    status_seconds: list[float] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    unsettled: int = 0


def classify(future: Any) -> str:
    """What a caller saw: done, failed (the service raised, or died running it), timed out."""
    try:
        future.result(timeout=0)
    except ServiceTimeoutError:
        return "timed_out"
    except ServiceCallError:
        return "failed"
    except Exception:
        return "other"  # unavailable: failed (it may have run) or rejected (it never ran)
    return "done"


def run_chaos(
    env: Any,
    *,
    duration: float,
    in_flight: int,
    timeouts: tuple[float, ...],
    actions: dict[str, Callable[[], None]],
    action_every: float,
    status: Callable[[], Any],
    seed: int = 13,
) -> ChaosResult:
    """Drive the service "model" of ``env`` (see the module docstring)."""
    rng = random.Random(seed)
    result = ChaosResult()
    slots = threading.Semaphore(in_flight)
    # Only the calls in flight are kept (a list of every future would make the collector's
    # pauses part of what the status samples measure); each is classified when it settles.
    pending: set[Any] = set()
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def settled(future: Any) -> None:
        outcome = classify(future)
        with lock:
            pending.discard(future)
            result.outcomes[outcome] += 1
        slots.release()

    def load() -> None:
        x = 0
        try:
            while not stop.is_set():
                if not slots.acquire(timeout=0.5):
                    continue
                x += 1
                result.made += 1
                try:
                    future = env.call_service_async("model", x, timeout=rng.choice(timeouts))
                except Exception:
                    slots.release()
                    with lock:
                        result.outcomes["raised"] += 1  # refused at once (counted as rejected)
                    continue
                with lock:
                    pending.add(future)
                future.add_done_callback(settled)
        except BaseException as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)

    def chaos() -> None:
        names: list[str] = []
        try:
            while not stop.wait(rng.uniform(0.5, 1.5) * action_every):
                if not names:  # every action once per round, in a random order
                    names = sorted(actions)
                    rng.shuffle(names)
                name = names.pop()
                try:
                    actions[name]()
                except SageError as exc:  # e.g. a swap while the service restarts: refused
                    result.actions[f"{name} refused: {type(exc).__name__}"] += 1
                    continue
                result.actions[name] += 1
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [
        threading.Thread(target=load, name="chaos-load", daemon=True),
        threading.Thread(target=chaos, name="chaos-actions", daemon=True),
    ]
    for t in threads:
        t.start()
    end = time.monotonic() + duration
    tick = threading.Event()
    while time.monotonic() < end:
        start = time.perf_counter()
        status()
        result.status_seconds.append(time.perf_counter() - start)
        tick.wait(0.1)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "the load or chaos thread hung"
    longest = max(timeouts) + 30
    end = time.monotonic() + longest
    while time.monotonic() < end:
        with lock:
            left = list(pending)
        if not left:
            break
        try:
            left[0].exception(timeout=max(0.0, end - time.monotonic()))
        except Exception:
            pass
        tick.wait(0.01)  # its callback runs on the callback thread
    with lock:
        result.unsettled = len(pending)
    return result


def balance(stats: Any) -> int:
    """Calls a service's counters account for: every outcome, less the retries."""
    return (
        stats.done + stats.failed + stats.timed_out + stats.rejected + stats.cancelled
    ) - stats.retries


def summary(result: ChaosResult, stats: Any) -> str:
    """One line for the log (pytest -s shows it): the load and what the counters say."""
    slowest = max(result.status_seconds) * 1000
    return (
        f"chaos: {result.made:,} calls, actions {dict(result.actions)}; done {stats.done:,}, "
        f"failed {stats.failed:,}, timed out {stats.timed_out:,}, rejected {stats.rejected:,}, "
        f"restarts {stats.restarts}; status slowest {slowest:.1f} ms of "
        f"{len(result.status_seconds)} samples"
    )
