"""``AwaitableFuture``: a ``concurrent.futures.Future`` that is cheap to create and complete, and
that an asyncio coroutine can ``await``.

A standard ``Future`` builds a ``Condition`` (a lock, a waiter list and bound methods) in its
constructor and takes it on every ``done()``, ``result()`` and ``set_result()``. With a thousand
calls in flight those objects cost more than the call itself and keep the garbage collector busy.
Here the condition is created only when a thread has to wait for, or register interest in, a
future that is not finished yet; completing a future nobody waits on is a few stores.

The decision between the two paths is made under one module lock (``_LAZY``), so a waiter that
creates the condition and a completer that finds none cannot miss each other. Everything that
relies on ``Future`` internals (``concurrent.futures.wait``, ``as_completed``,
``add_done_callback``) reaches ``_condition`` and gets a real one. Relies on the private state
names of ``concurrent.futures._base`` (stable since Python 3.8).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from concurrent.futures import CancelledError, Future, InvalidStateError, TimeoutError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from typing import Any

__all__ = ["AwaitableFuture"]

# Invariants: a future's _cond goes from None to a Condition once, under _LAZY; a completer that
# sees None under _LAZY finishes the future before releasing it.
_LAZY = threading.Lock()
_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class AwaitableFuture(Future):  # type: ignore[type-arg]
    """A lightweight ``concurrent.futures.Future``; ``await future`` works in asyncio."""

    def __init__(self) -> None:  # no super().__init__(): it would build the Condition
        self._cond: threading.Condition | None = None
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]  # lazy, see above
        cond = self._cond
        if cond is None:
            with _LAZY:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    def has_done_callbacks(self) -> bool:
        """True once someone added a done-callback (whoever completes it runs them)."""
        return bool(self._done_callbacks)

    # -- completion -------------------------------------------------------------------------
    def _finish(self, result: Any, exc: BaseException | None) -> None:
        if self._cond is None:
            with _LAZY:
                lazy = self._cond is None
                late = lazy and self._state in _DONE
                if lazy and not late:
                    self._result, self._exception, self._state = result, exc, FINISHED
            if late:  # raised outside _LAZY: repr() takes _condition
                raise InvalidStateError(f"{self._state}: {self!r}")
            if lazy:
                if self._done_callbacks:
                    self._invoke_callbacks()  # type: ignore[attr-defined]  # Future's own
                return
        if exc is None:
            super().set_result(result)
        else:
            super().set_exception(exc)

    def _settle(self, result: Any, exc: BaseException | None) -> None:
        """Complete unless already complete: of racing completions (a response and its
        deadline, say) the first wins and the others are dropped."""
        try:
            self._finish(result, exc)
        except InvalidStateError:
            pass

    def set_result(self, result: Any) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._finish(None, exception)

    # -- reading ----------------------------------------------------------------------------
    def done(self) -> bool:
        return self._state in _DONE

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def result(self, timeout: float | None = None) -> Any:
        if self._state != FINISHED:
            self._wait(timeout)
        exc = self._exception
        if exc is not None:
            try:
                raise exc
            finally:
                exc = None  # break the cycle frame -> exc -> traceback -> frame
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state != FINISHED:
            self._wait(timeout)
        return self._exception

    def _wait(self, timeout: float | None) -> None:
        with self._condition:
            if self._state not in _DONE:
                self._condition.wait(timeout)
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                raise CancelledError()
            if self._state != FINISHED:
                raise TimeoutError()

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.wrap_future(self).__await__()
