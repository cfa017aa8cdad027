"""``CallbackExecutor``: where the done-callbacks of an environment's futures run.

::

    service worker / deadline thread / Ray's callback thread
        future completes ──run_callbacks(future, callbacks)──▶ queue
    sage_nb/callbacks/<env> ──▶ each callback(future), in completion order
    sage_nb/callbacks/<env> ◀── run(action): a retry's next attempt (handed over by the
                                 deadline thread, which runs no user code itself)

Callbacks are user code: run by the thread that completed the future, a callback that calls
a service synchronously could wait for the very worker it runs on. Here they run on one
thread of their own, in the order the futures completed; a callback that blocks delays the
ones after it (as in an asyncio loop), never a service or a deadline.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..threads import make_thread

__all__ = ["CallbackExecutor"]

log = logging.getLogger(__name__)

_STOP = object()


class CallbackExecutor:
    """One daemon thread, ``sage_nb/callbacks/<name>``, started on first use."""

    def __init__(self, name: str) -> None:
        self.name = name
        # Invariants: _thread goes from None to a started thread once, under _lock, unless
        # _closed; after close() nothing is queued and work runs in the submitting thread.
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def run_callbacks(self, future: Any, callbacks: list[Callable[[Any], Any]]) -> None:
        """Run ``callback(future)`` for each of ``callbacks`` on the executor's thread."""
        self._put((future, callbacks))

    def run(self, action: Callable[[], Any]) -> None:
        """Run ``action()`` on the executor's thread."""
        self._put((None, action))

    def _put(self, item: tuple[Any, Any]) -> None:
        if self._thread is None or self._closed:
            with self._lock:
                if self._closed:
                    _execute(*item)  # closing: no thread any more, run it here
                    return
                if self._thread is None:
                    self._thread = make_thread(f"sage_nb/callbacks/{self.name}", self._serve)
                    self._thread.start()
        self._queue.put(item)

    def _serve(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is _STOP:
                return
            _execute(*item)

    def close(self, timeout: float | None = 2.0) -> None:
        """Run what is queued, then stop the thread (joined within ``timeout``)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)
        if thread is not threading.current_thread():
            thread.join(timeout)
        while True:  # whatever raced in behind the stop: run it here
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                _execute(*item)

    def threads(self) -> list[threading.Thread]:
        t = self._thread
        return [t] if t is not None and t.is_alive() else []


def _execute(future: Any, work: Any) -> None:
    if future is None:
        try:
            work()
        except Exception:
            log.exception("sage_nb: a deferred action raised")
        return
    for callback in work:
        try:
            callback(future)
        except Exception:
            log.exception("exception calling callback for %r", future)
