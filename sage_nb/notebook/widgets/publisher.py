"""``Publisher``: the one thread per kernel that refreshes every live view.

::

    calls, job starts/ends ──ActivitySignal.fire()──▶ wake event
    sage_nb/publisher: while views are open:
        refresh every view (render statistics → widget.value if it changed)
        something changed or running → wait 0.1 s (at most 10 updates a second)
        all quiet → arm the signals, wait on the wake event (no timeout, no polling)

Views read ``statistics()``; the runtime never calls into a view, so rendering never runs on a
hot path. The thread survives any exception in a refresh (logged once, then at DEBUG; the round is
tried again after ``INTERVAL``), and if it ever dies anyway the next view shown, or the next
``poke()``, starts a new one. The thread ends when every view is closed or their environments
are closed; the kernel's hooks also end it at once (views close, thread joined): ``release(env)`` on
``%sage_reset``, ``shutdown()`` on ``%unload_ext sage_nb`` and at kernel shutdown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ...runtime.threads import make_thread

if TYPE_CHECKING:
    from .views import LiveView

__all__ = ["Publisher", "publish", "publisher", "release", "shared", "shutdown"]

log = logging.getLogger(__name__)

#: Seconds between two refreshes while something changes: at most 10 a second.
INTERVAL = 0.1

_lock = threading.Lock()
_publisher: Publisher | None = None

# One refresh round's snapshots, shared by the views it refreshes (the graph and the monitor
# both read the services' statistics); per thread, so a refresh elsewhere reads fresh data.
_round = threading.local()


@contextmanager
def _one_round() -> Iterator[None]:
    _round.memo = {}
    try:
        yield
    finally:
        _round.memo = None


def shared(key: Any, compute: Callable[[], Any]) -> Any:
    """``compute()``, computed once per refresh round of the publisher for ``key``."""
    memo = getattr(_round, "memo", None)
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def publisher() -> Publisher:
    """The kernel's publisher (created on first use)."""
    global _publisher
    with _lock:
        if _publisher is None or _publisher.finished:
            _publisher = Publisher()
        return _publisher


def publish(view: LiveView) -> Publisher:
    """Start refreshing ``view`` from the kernel's publisher thread (starting it if needed)."""
    while True:
        pub = publisher()
        # False only if its thread ended (its last view closed) since publisher() returned it:
        # the next publisher() call makes a new one.
        if pub.add(view):
            return pub


def release(env: object, timeout: float | None = 2.0) -> None:
    """Close the views that watch ``env`` (each keeps its last state as static markup); if no
    view is left, wait up to ``timeout`` seconds for the publisher thread to end."""
    with _lock:
        pub = _publisher
    if pub is not None:
        pub.release(env, timeout)


def shutdown(timeout: float | None = 2.0) -> None:
    """Close every view and end the publisher thread (``%unload_ext``, kernel shutdown)."""
    with _lock:
        pub = _publisher
    if pub is not None:
        pub.stop(timeout)


class Publisher:
    """Refreshes registered views from a daemon thread, throttled, idle without polling."""

    def __init__(self) -> None:
        # Invariants: _views and _thread change under _lock; _wake is shared with the
        # ActivitySignal of every environment a view watches.
        self._lock = threading.Lock()
        self._views: list[LiveView] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished = False
        self.refreshes = 0
        #: Refresh rounds that raised (the first is logged as a warning, the rest at DEBUG).
        self.errors = 0

    def add(self, view: LiveView) -> bool:
        """Refresh ``view`` from now on; False if this publisher has already ended."""
        with self._lock:
            if self.finished:
                return False
            self._views.append(view)
            for env in view.environments():
                env.activity.event = self._wake
            self._ensure_thread()
        self._wake.set()
        return True

    def _ensure_thread(self) -> None:
        """Under ``_lock``: start the thread unless it runs (first view, or it died)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            thread = make_thread("sage_nb/publisher", self._run)
            thread.start()
            self._thread = thread  # only once started: a Ctrl-C in between leaves the old

    def poke(self) -> None:
        """Refresh soon (a view closed, an environment stopped); restarts a thread that died."""
        with self._lock:
            if not self.finished and self._views:
                self._ensure_thread()
        self._wake.set()

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def views(self) -> list[LiveView]:
        with self._lock:
            return list(self._views)

    def stop(self, timeout: float | None = 2.0) -> None:
        """Close every view (each leaves its static snapshot) and end the thread."""
        with self._lock:
            views, self._views = self._views, []
            thread = self._thread
            self.finished = True
        for view in views:
            view.close()
        self._wake.set()
        self._join(thread, timeout)

    def release(self, env: object, timeout: float | None = 2.0) -> None:
        """Close the views that watch ``env``; end the thread if no other view is open."""
        with self._lock:
            views = [v for v in self._views if any(e is env for e in v.environments())]
        for view in views:
            view.close()
        self._wake.set()
        with self._lock:
            left = any(not v.closed for v in self._views)
            thread = self._thread
        if not left:
            # The thread sees no open view on waking and ends; a view shown meanwhile keeps
            # it running and this join times out, which is harmless.
            self._join(thread, timeout)

    @staticmethod
    def _join(thread: threading.Thread | None, timeout: float | None) -> None:
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        wake = self._wake
        while True:
            with self._lock:
                self._views = [v for v in self._views if not v.closed]
                views = list(self._views)
                if not views:
                    self.finished = True
                    return
            try:
                quiet = self._round(views)
            except Exception:  # the thread outlives anything a round raises
                self.errors += 1
                level = logging.WARNING if self.errors == 1 else logging.DEBUG
                log.log(level, "a refresh of the live views failed; trying again", exc_info=True)
                wake.wait(INTERVAL)
                wake.clear()
                continue
            if quiet:
                wake.wait()

    def _round(self, views: list[LiveView]) -> bool:
        """Refresh every view once; True if all is quiet (wait for the next activity)."""
        wake = self._wake
        changed = busy = False
        with _one_round():
            for view in views:
                try:
                    changed = view.refresh() or changed
                    busy = view.busy() or busy
                except Exception:  # a broken view must not stop the others
                    log.exception("refreshing %r failed; closing it", view)
                    view.close()
        self.refreshes += 1
        if any(view.closed for view in views):
            return False  # drop it now; maybe nothing is left to publish
        if changed or busy:
            wake.wait(INTERVAL)
            wake.clear()
            return False
        # Quiet: arm every environment's signal, then look once more (a change that
        # happened before arming would not fire), then sleep until something happens.
        wake.clear()
        for view in views:
            for env in view.environments():
                env.activity.armed = True
        return not any(v.refresh() for v in views)
