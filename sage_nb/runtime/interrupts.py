"""Ctrl-C while a cell waits for a job: never lost, never half-way through starting one.

Python runs a signal handler in whatever code the main thread executes next. If that code is
a finalizer (a ``__del__`` or weakref callback that the garbage collector runs in the main
thread), the ``KeyboardInterrupt`` raised there is printed as "Exception ignored" and
dropped: a loop waiting for an endless job would then never see it. ``Interrupts`` remembers
each SIGINT, so a waiting loop that calls ``check()`` sees it however Python fared with the
exception, and can hold interrupts back while a job starts (an interrupt there would leave
started tasks running and no job to stop).

Examples
--------
>>> with Interrupts() as interrupts:
...     with interrupts.held():
...         pass  # start the job: an interrupt meanwhile waits for check()
...     interrupts.check()  # raises KeyboardInterrupt if one arrived
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Interrupts"]


class Interrupts:
    """While entered in the main thread: SIGINT is remembered (``pending``) and raised as
    ``KeyboardInterrupt``, unless held back (``held()``).

    Anywhere else (another thread, a SIGINT handler that is not a Python callable) nothing is
    installed and ``check()`` never raises. The previous handler is restored on exit.
    """

    def __init__(self) -> None:
        self.pending = False
        self._holding = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.pending = True
        if not self._holding:
            raise KeyboardInterrupt

    def __enter__(self) -> Interrupts:
        main = threading.current_thread() is threading.main_thread()
        if main and callable(signal.getsignal(signal.SIGINT)):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Only remember interrupts during the block; ``check()`` raises them afterwards."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if an interrupt arrived, even one Python dropped."""
        if self.pending:
            raise KeyboardInterrupt
