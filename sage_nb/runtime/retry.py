"""``RetryPolicy``: when and how often a failed service call is tried again.

Retries happen on the caller's side (``ProxyManager``), inside the caller's deadline: a retry
that could not finish before the deadline is not attempted, so a call with retries never takes
longer than its timeout. By default the failures retried are those where the service was not
available: it was stopped, restarting, overloaded, or the call timed out before starting. Such a
call did not run, with one exception: a call whose worker died while running it (or whose Ray
actor died) fails with ``ServiceUnavailableError`` and is retried too, so a service with retries
gives at-least-once execution and its methods should be idempotent. Errors the method itself
raised are retried only if listed in ``retry_on``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import (
    JobCancelledError,
    ServiceCallError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)

__all__ = ["RetryPolicy", "call_with_retries"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Retry up to ``retries`` times, waiting ``backoff * multiplier**attempt`` seconds (at most
    ``max_backoff``), each wait shortened at random by up to ``jitter`` (a fraction) so that
    callers failing together do not retry together.

    Parameters
    ----------
    retries:
        How many times to try again after the first attempt.
    retry_on:
        Exception types (or their qualified names, as in ``ServiceCallError.remote_type``)
        raised by the service that are worth retrying, in addition to the safe defaults.
    """

    retries: int = 3
    backoff: float = 0.05
    multiplier: float = 2.0
    max_backoff: float = 2.0
    jitter: float = 0.5
    retry_on: tuple[Any, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {self.retries!r}")
        if self.backoff < 0 or self.max_backoff < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff and max_backoff must be >= 0 and jitter in [0, 1]")

    @classmethod
    def coerce(cls, value: RetryPolicy | int | None) -> RetryPolicy | None:
        """``None``, an int (that many retries, default backoff) or a policy."""
        if value is None or isinstance(value, RetryPolicy):
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"retries takes an int or a RetryPolicy, got {value!r}")
        return cls(retries=value)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        base = min(self.max_backoff, self.backoff * self.multiplier**attempt)
        return base * (1 - self.jitter * random.random())

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, ServiceTimeoutError):
            return not exc.started or self._listed(exc)
        if isinstance(exc, ServiceUnavailableError):
            return True
        if isinstance(exc, ServiceCallError):
            return self._listed(exc.__cause__) or any(
                isinstance(t, str) and t == exc.remote_type for t in self.retry_on
            )
        return self._listed(exc)

    def _listed(self, exc: BaseException | None) -> bool:
        if exc is None:
            return False
        return any(isinstance(t, type) and isinstance(exc, t) for t in self.retry_on)


def call_with_retries(
    attempt: Callable[[float], T],
    policy: RetryPolicy,
    timeout: float,
    name: str,
    method: str,
    stop_event: threading.Event,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """A sync call with retries: ``attempt(seconds_left)`` until it succeeds, or until the
    policy, or the deadline ``timeout`` seconds from now, allows no more; ``on_retry`` runs
    before each retry's backoff. A set ``stop_event`` (the caller's job is stopping) ends the
    wait with ``JobCancelledError``. A retry with no time left is not made: the last
    failure is raised."""
    deadline = time.monotonic() + timeout
    tried = 0
    last: Exception | None = None
    while True:
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                if last is not None:
                    raise last
                raise ServiceTimeoutError(name, method, timeout, started=False)
            return attempt(left)
        except Exception as exc:
            if exc is last:
                raise
            last = exc
            delay = policy.delay(tried)
            if (
                tried >= policy.retries
                or not policy.retryable(exc)
                or time.monotonic() + delay >= deadline
            ):
                raise
            if on_retry is not None:
                on_retry()
            tried += 1
            if stop_event.wait(delay):
                raise JobCancelledError(f"job stopping: retry of {name!r} not made") from exc
