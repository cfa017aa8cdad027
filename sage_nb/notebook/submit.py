"""Running ``sage_env``'s pipeline from a cell (``%sage_submit``): start the job, wait for it in
the cell's own thread with its progress shown, stop it on Ctrl-C, count the service calls it
made for the summary.

The waiting is ``runtime/waiting.py``'s, the loop ``env.submit()`` uses too: inside
``Interrupts`` an interrupt only counts, and the short waits raise it (within 0.1 s); the job is
then stopped cleanly (a second interrupt stops waiting for a busy task) and ``JobInterrupted``
says how far it got.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..runtime.waiting import stop_interrupted, wait_for_job
from .progress import SubmitProgress

if TYPE_CHECKING:
    from ..core.transformation import Transformation
    from ..runtime.interrupts import Interrupts
    from ..runtime.job_manager import Job

__all__ = [
    "JobInterrupted",
    "calls_since",
    "pipeline_to_run",
    "service_calls",
    "start_job_in_cell",
    "wait_in_cell",
]


class JobInterrupted(KeyboardInterrupt):
    """The kernel was interrupted during ``%sage_submit``; the job has been stopped.

    It is a ``KeyboardInterrupt``, so the rest of the cell and the cells queued after it
    (Run All) do not run; IPython shows it as one line instead of a traceback.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mKeyboardInterrupt\x1b[0m: {self}"]


def pipeline_to_run(
    pipeline: list[Transformation], submitted: list[Transformation]
) -> list[Transformation]:
    """What was built since the last submit (``submitted``) if it stands on its own, else
    everything."""
    old = {id(t) for t in submitted}
    new = [t for t in pipeline if id(t) not in old]
    if not new or len(new) == len(pipeline):
        return pipeline
    built = {id(t) for t in new}
    if all(id(upstream) in built for t in new for upstream in t.inputs):
        return new
    return pipeline  # the new operators extend the old pipeline: run all of it


def start_job_in_cell(env: Any, interrupts: Interrupts) -> Job:
    """Start ``env``'s job; a pipeline it cannot run is a ``UsageError``.

    Interrupts only count until ``check()`` (see ``Interrupts``): one that arrives while the
    job starts its threads stops the whole job once it exists (``JobInterrupted``).
    """
    try:
        job: Job = env.start_job()
    except (ValueError, TypeError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None
    try:
        interrupts.check()
    except KeyboardInterrupt:
        raise _interrupted(job, interrupts) from None
    return job


def wait_in_cell(
    job: Job, interrupts: Interrupts, *, timeout: float | None, show_progress: bool
) -> None:
    """Wait until ``job`` ends (``timeout``: stop it after that many seconds), showing its
    progress; on an interrupt stop it and raise ``JobInterrupted``."""
    progress: SubmitProgress | None = None
    try:
        if show_progress:
            progress = SubmitProgress(job)
        wait_for_job(
            job,
            interrupts,
            timeout=timeout,
            tick=progress.tick if progress is not None else None,
        )
    except KeyboardInterrupt:
        raise _interrupted(job, interrupts) from None  # before progress closes
    finally:
        if progress is not None:
            progress.close()


def _interrupted(job: Job, interrupts: Interrupts) -> JobInterrupted:
    """Stop ``job`` after an interrupt (a second interrupt stops waiting for a busy task);
    the error says how far it got."""

    def say_busy() -> None:
        print(
            f"stopping job {job.name!r}: a task is busy; interrupt again to stop waiting",
            file=sys.stderr,
        )

    clean = stop_interrupted(job, interrupts, on_busy=say_busy)
    done, total = job.progress()
    of = f" of {total:,}" if total is not None else ""
    note = "" if clean else " (a task was still busy; it stops after its current call)"
    return JobInterrupted(f"job {job.name!r} stopped after {done:,}{of} records{note}")


def service_calls(env: Any) -> dict[str, int]:
    """Calls each service of ``env`` answered so far (done, failed or timed out)."""
    return {s.name: s.done + s.failed + s.timed_out for s in env.statistics().services}


def calls_since(env: Any, before: dict[str, int]) -> dict[str, tuple[int, Any]]:
    """Calls each service answered since ``before``, with its statistics."""
    found = {}
    for s in env.statistics().services:
        n = s.done + s.failed + s.timed_out - before.get(s.name, 0)
        if n > 0:
            found[s.name] = (n, s)
    return found
