"""Ctrl-C while a cell waits for a job: noted by a handler that never raises, and raised by
the waiting loop at a point where that is safe.

Python's own SIGINT handler raises ``KeyboardInterrupt`` at whatever bytecode the main thread
runs next, and two places make that dangerous while a job runs in a kernel:

- inside ``Thread.is_alive()``, which ipykernel calls on its IOPub thread for every message a
  cell sends, CPython before 3.13 marks the thread that was asked about as stopped while it
  keeps running (gh-90882). ipykernel then sends from every thread straight onto its zmq
  socket, which is not thread-safe: the frames of messages from the cell and from the
  publisher thread interleave and the front end drops them ("Invalid Signature");
- inside a finalizer (a ``__del__`` the garbage collector runs in the main thread), the
  exception is printed as "Exception ignored" and dropped, so a loop waiting for an endless
  job never sees it.

``Interrupts`` replaces the handler while a cell waits: it only counts. ``check()`` raises
``KeyboardInterrupt`` once one arrived; the waiting loops call it between short waits.

Examples
--------
>>> with Interrupts() as interrupts:
...     pass  # start a job: an interrupt meanwhile only counts
...     interrupts.check()  # raises KeyboardInterrupt if one arrived
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["Interrupts"]


class Interrupts:
    """While entered in the main thread, SIGINT only counts (``count``); ``check()`` raises.

    Anywhere else (another thread, a SIGINT handler that is not a Python callable) nothing is
    installed and ``check()`` never raises. The previous handler is restored on exit.
    """

    def __init__(self) -> None:
        self.count = 0  # interrupts so far; written only by the handler (main thread)
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1

    def __enter__(self) -> Interrupts:
        main = threading.current_thread() is threading.main_thread()
        if main and callable(signal.getsignal(signal.SIGINT)):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if an interrupt arrived."""
        if self.count:
            raise KeyboardInterrupt
