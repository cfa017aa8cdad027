"""Waiting for a job in the calling thread, so that Ctrl-C stops it: one loop for
``env.submit()`` and ``%sage_submit``.

A cell's thread waits in short waits (0.1 s) inside ``Interrupts``: an interrupt only counts
there, and ``interrupts.check()`` between waits raises it (see ``interrupts.py``). What
interrupted the wait then stops the job with ``stop_interrupted``: a first interrupt stops it
cleanly and waits up to 2 s for its tasks; a second one stops waiting for a busy task.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .interrupts import Interrupts
    from .job_manager import Job

__all__ = ["stop_interrupted", "wait_for_job"]

#: Seconds between checks for an interrupt (and progress refreshes) while waiting.
POLL = 0.1
#: Seconds an interrupted job may take to stop before the wait gives up on a busy task.
STOP_WAIT = 2.0


def wait_for_job(
    job: Job,
    interrupts: Interrupts,
    *,
    timeout: float | None = None,
    tick: Callable[[], None] | None = None,
) -> bool:
    """Wait until ``job`` ends; True if it did, False if ``timeout`` stopped it first.

    Raises ``KeyboardInterrupt`` within ``POLL`` seconds of an interrupt (the caller stops the
    job: ``stop_interrupted``); calls ``tick()`` between waits (progress displays).
    """
    while not job.wait(POLL):
        interrupts.check()
        if tick is not None:
            tick()
        if timeout is not None and job.elapsed() > timeout:
            job.stop(timeout=STOP_WAIT)
            return False
    return True


def stop_interrupted(
    job: Job, interrupts: Interrupts, *, on_busy: Callable[[], None] | None = None
) -> bool:
    """Stop ``job`` after an interrupt; True once every task ended.

    Waits up to ``STOP_WAIT`` seconds; ``on_busy()`` is called once if a task is still busy
    after a quarter second (to say so), and a further interrupt stops waiting at once.
    """
    first = interrupts.count
    if job.stop(timeout=0.25):
        return True
    if on_busy is not None:
        on_busy()
    deadline = time.monotonic() + STOP_WAIT - 0.25
    clean = False
    while not clean and interrupts.count == first and time.monotonic() < deadline:
        clean = job.wait(min(POLL, max(0.0, deadline - time.monotonic())))
    return clean
