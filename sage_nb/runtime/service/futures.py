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

Done-callbacks are user code, and whoever completes a future is a runtime thread (a service
worker, the deadline thread, Ray's callback thread): a future that has a ``callbacks``
executor (the environment's, see ``callbacks.py``) hands them to it instead of running them
in place, so a callback may itself call a service, even the one that completed it. The
runtime's own reactions (an ``await``, a retry) are hooks that never run user code
(``_on_done``) and run in place.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Generator
from concurrent.futures import CancelledError, Future, InvalidStateError, TimeoutError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .callbacks import CallbackExecutor

__all__ = ["AwaitableFuture"]

log = logging.getLogger(__name__)

# Invariants: a future's _cond goes from None to a Condition once, under _LAZY; a completer that
# sees None under _LAZY finishes the future before releasing it.
_LAZY = threading.Lock()
_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class AwaitableFuture(Future):  # type: ignore[type-arg]
    """A lightweight ``concurrent.futures.Future``; ``await future`` works in asyncio."""

    #: Where done-callbacks run (None: in the completing thread, as a standard Future).
    callbacks: CallbackExecutor | None = None

    def __init__(self) -> None:  # no super().__init__(): it would build the Condition
        self._cond: threading.Condition | None = None
        self._hooks: list[Callable[[AwaitableFuture], None]] | None = None
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
        """True once someone added a done-callback."""
        return bool(self._done_callbacks)

    def _on_done(self, hook: Callable[[AwaitableFuture], None]) -> None:
        """Run ``hook(self)`` in place once done (now, if it is): for the runtime's own quick
        reactions, which never run user code; user callbacks go through
        ``add_done_callback``."""
        with self._condition:
            if self._state not in _DONE:
                if self._hooks is None:
                    self._hooks = []
                self._hooks.append(hook)
                return
        hook(self)

    def _invoke_callbacks(self) -> None:
        hooks = self._hooks
        if hooks is not None:
            self._hooks = None
            for hook in hooks:
                try:
                    hook(self)
                except Exception:  # pragma: no cover - hooks do not raise
                    log.exception("a runtime hook of %r raised", self)
        if not self._done_callbacks:
            return
        executor = self.callbacks
        if executor is None:
            super()._invoke_callbacks()  # type: ignore[misc]
            return
        callbacks, self._done_callbacks = self._done_callbacks, []
        executor.run_callbacks(self, callbacks)

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
                if self._done_callbacks or self._hooks:
                    self._invoke_callbacks()
                return
        if exc is None:
            super().set_result(result)
        else:
            super().set_exception(exc)

    def _settle(self, result: Any, exc: BaseException | None) -> bool:
        """Complete unless already complete: of racing completions (a response and its
        deadline, say) the first wins and the others are dropped. True if this one won."""
        try:
            self._finish(result, exc)
        except InvalidStateError:
            return False
        return True

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
        if self.done():
            return self.result()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def settle(_: AwaitableFuture) -> None:  # the completing thread: no user code
            try:
                loop.call_soon_threadsafe(_copy_state, self, waiter)
            except RuntimeError:  # the loop closed meanwhile: nobody awaits any more
                pass

        def cancelled(done: asyncio.Future[Any]) -> None:  # the awaiting task was cancelled
            if done.cancelled():
                self.cancel()

        waiter.add_done_callback(cancelled)
        self._on_done(settle)
        return (yield from waiter)


def _copy_state(source: AwaitableFuture, waiter: asyncio.Future[Any]) -> None:
    if waiter.cancelled():
        return
    if source.cancelled():
        waiter.cancel()
        return
    exc = source.exception()
    if exc is None:
        waiter.set_result(source.result())
    else:
        waiter.set_exception(exc)
