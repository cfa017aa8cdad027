"""``JobManager`` compiles and starts jobs; ``Job`` is the handle a user waits on or stops.

::

    env.submit() ─▶ JobManager.submit ─▶ ExecutionGraph.compile ─▶ Job(graph)
                                              Job.start ─▶ OperatorTask threads
    last task to finish ─▶ Job.task_finished ─▶ status, done event ─▶ job.wait() is True
    a task raises ─────▶ Job.task_failed ─▶ stop every task (channels closed) ─▶ "failed"
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import JobFailedError
from .dead_letters import DEFAULT_KEEP_DEAD_LETTERS, DeadLetters, check_limit
from .graph import ExecutionGraph, NodeStatistics, OperatorNode, Region
from .tasks import QUIET, OperatorTask
from .transit import Transit
from .views import make_view

if TYPE_CHECKING:
    from .proxy import ProxyManager

__all__ = ["DEFAULT_KEEP_JOBS", "Job", "JobManager", "JobStatistics"]

log = logging.getLogger(__name__)

#: How many ended jobs an environment keeps by default (``keep_jobs=``).
DEFAULT_KEEP_JOBS = 100

_job_ids = itertools.count(1)

#: Makes the task of one parallel instance of a region: ``(job, region, index, capacity)``
#: (``Backend.create_operator_task``, see ``backend.py``): ``OperatorTask`` (a thread) by
#: default; the Ray backend runs parallel regions as actors behind the same interface.
OperatorTaskFactory = Callable[["Job", Region, int, int], OperatorTask]


@dataclass(frozen=True)
class JobStatistics:
    """A snapshot of a job: its state, timing and every node's counts.

    ``done`` counts the records finished (``Job.progress``: read, less those still on their
    way through the graph; below ``total`` until the job is done) and ``total`` how many the
    sources will read, where known (None when a source's length is unknown).
    """

    name: str
    status: str
    elapsed: float
    done: int
    total: int | None
    nodes: tuple[NodeStatistics, ...]
    error: str | None


class Job:
    """A submitted pipeline: wait for it, stop it, inspect it.

    ``status`` is one of ``"running"``, ``"finished"``, ``"stopped"`` and ``"failed"``;
    ``error`` holds the exception of a failed job.
    """

    def __init__(
        self,
        graph: ExecutionGraph,
        *,
        name: str,
        proxy_factory: Callable[[OperatorNode, Job], ProxyManager],
        channel_capacity: int = 32,
        max_batch: int = 1024,
        on_done: Callable[[Job], None] | None = None,
        create_task: OperatorTaskFactory = OperatorTask,
        record_at_a_time: bool = False,
        keep_dead_letters: int | None = DEFAULT_KEEP_DEAD_LETTERS,
    ) -> None:
        self.name = name
        self.execution_graph = graph
        #: The environment that submitted the job (set by it; used by displays).
        self.environment: Any = None
        self.max_batch = max_batch
        #: Read by tasks between batches and by operators' service calls: stop now.
        self.stopping = False
        #: Set together with ``stopping``: interrupts waits (retry backoff) in operators.
        self.stop_event = threading.Event()
        #: Batches between tasks: sources wait on it record at a time (SAGE's semantics), and
        #: the tasks a feedback loop feeds learn from it that the loop has died out.
        loops = [e.downstream for e in graph.edges if e.feedback]
        self.transit: Transit | None = (
            Transit(self.stop_event) if record_at_a_time or loops else None
        )
        self.status = "created"
        self.error: BaseException | None = None
        #: Records that failed in operators with ``on_error="dead_letter"``: the newest
        #: ``keep_dead_letters`` (a list-like ``DeadLetters``), see ``dead_letters_dropped``.
        self.dead_letters = DeadLetters(keep_dead_letters, job=name)
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._proxy_factory = proxy_factory
        self._on_done = on_done
        # Invariants: _remaining, _final and status change under _lock; _done is set exactly
        # once, after status reached its final value.
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._final: str | None = None
        self.tasks = [
            create_task(self, region, i, channel_capacity)
            for region in graph.regions
            for i in range(region.parallelism)
        ]
        by_node = {r.head.id: [t for t in self.tasks if t.region is r] for r in graph.regions}
        for task in self.tasks:
            task.targets = [by_node[e.downstream.id] for e in task.program.out_edges]
        self._remaining = len(self.tasks)
        if loops and self.transit is not None:
            fed = [t.channel for t in self.tasks if t.region.head in loops]

            def wake_loops() -> None:
                for channel in fed:
                    if channel is not None:
                        channel.nudge(QUIET)

            self.transit.on_quiet = wake_loops

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self.status != "created":
                raise RuntimeError(f"job {self.name!r} was already started")
            self.status = "running"
            self.started_at = time.monotonic()
        for task in self.tasks:
            task.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job has ended; True if it did, False if ``timeout`` passed first.

        A job ends when every record reached every sink (finite sources), when it is stopped,
        or when an operator fails (``status == "failed"``, the error in ``error``).
        """
        if not self._done.wait(timeout):
            return False
        for task in self.tasks:  # the last task sets the event just before it exits
            if task.thread is not threading.current_thread():
                task.thread.join(1.0)
        return True

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop the job: sources stop reading, tasks stop after their current record or batch.

        Returns True once every task has ended, False if one is still busy after ``timeout``
        (for example inside a function that never returns; its thread is a daemon).
        """
        self._request_stop("stopped")
        return self.wait(timeout)

    def _request_stop(self, status: str) -> None:
        with self._lock:
            if self._final is None and not self._done.is_set():
                self._final = status
            self.stopping = True
        self.stop_event.set()
        if self.transit is not None:
            self.transit.wake()
        for task in self.tasks:
            task.abort()

    # -- reports from the tasks (see backend.py) --------------------------------------------
    def task_failed(self, exc: BaseException) -> None:
        """A task's function raised: the job fails with the first such error and stops."""
        with self._lock:
            first = self.error is None and self._final is None
            if first:
                self.error = exc
        if first:
            self._request_stop("failed")

    def task_finished(self, task: OperatorTask) -> None:
        """A task ended (drained, stopped or failed); the last one ends the job."""
        with self._lock:
            self._remaining -= 1
            if self._remaining:
                return
            self.status = self._final or "finished"
            self.ended_at = time.monotonic()
        self._done.set()
        if self._on_done is not None:
            try:
                self._on_done(self)
            except Exception:
                log.exception("cleanup after job %r failed", self.name)

    def proxy_for(self, node: OperatorNode) -> ProxyManager:
        """The proxy an instance of ``node`` calls services through."""
        return self._proxy_factory(node, self)

    # -- observation -----------------------------------------------------------------------
    @property
    def finite(self) -> bool:
        """True if every source is finite (``from_batch``, ``from_collection``): the job ends
        by itself once they are drained."""
        return not any(
            n.kind == "source" and n.transformation.streaming for n in self.execution_graph.nodes
        )

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def dead_letters_dropped(self) -> int:
        """How many dead letters were dropped to keep ``job.dead_letters`` at its limit (the
        environment's ``keep_dead_letters``): the oldest go first, and none is lost silently."""
        return self.dead_letters.dropped

    def raise_for_error(self) -> None:
        """Raise the job's error if it failed."""
        if self.status == "failed":
            if self.error is not None:
                raise self.error
            raise JobFailedError(f"job {self.name!r} failed")

    def progress(self) -> tuple[int, int | None]:
        """(records finished, how many the sources will read or None if unknown).

        Progress is counted where records finish, not where they are read (a source reads a
        small batch at once): the records read less those still on their way through the
        graph, that is, sent to an operator and not yet processed by it. A fan-out or a
        flatmap makes that an underestimate, never more; and it stays below ``total`` until
        the job is done.
        """
        read = 0
        total: int | None = 0
        on_the_way = 0
        for node in self.execution_graph.nodes:
            if node.kind == "source":
                read += sum(c.records_out for c in node.counters)
                total = None if total is None or node.total is None else total + node.total
                continue
            processed = sum(c.records_in for c in node.counters)  # read before its inputs
            sent = sum(sum(c.records_out for c in e.upstream.counters) for e in node.inputs)
            on_the_way += max(0, sent - processed)
        if self.done:
            return read, total
        finished = max(0, read - on_the_way)
        if total is not None and total > 0:
            finished = min(finished, total - 1)  # 100% only once the job is done
        return finished, total

    def records_read(self) -> int:
        """Records the sources have read so far."""
        return sum(
            c.records_out
            for n in self.execution_graph.nodes
            if n.kind == "source"
            for c in n.counters
        )

    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    def statistics(self) -> JobStatistics:
        done, total = self.progress()
        return JobStatistics(
            name=self.name,
            status=self.status,
            elapsed=self.elapsed(),
            done=done,
            total=total,
            nodes=tuple(self.execution_graph.node_statistics()),
            error=None if self.error is None else f"{type(self.error).__name__}: {self.error}",
        )

    def summary(self) -> str:
        """One line: status, records, time, and the error if any."""
        _, total = self.progress()
        done = self.records_read()
        of = f" of {total:,}" if total is not None else ""
        sinks = sum(
            c.records_in for n in self.execution_graph.nodes if n.kind == "sink" for c in n.counters
        )
        text = (
            f"job {self.name!r} {self.status}: {done:,}{of} records read, {sinks:,} reached sinks, "
            f"{self.elapsed():.2f} s"
        )
        if self.error is not None:
            text += f"; {type(self.error).__name__}: {self.error}"
        return text

    def __repr__(self) -> str:
        return f"<Job {self.summary()}>"

    def graph(self) -> Any:
        """A live view of this job's execution graph: a widget in a notebook that keeps
        counting while the job runs, then shows its final state. Needs ``sage_nb[notebook]``
        (see ``views.py``: the notebook layer registers the view)."""
        return make_view("graph", self.environment, self)


class JobManager:
    """Compiles an environment's pipeline into jobs and keeps track of them.

    ``jobs`` holds every job not ended yet and the newest ``keep_jobs`` ended ones (None: all);
    older ended jobs are forgotten when a new job is created and counted in ``dropped``. Each
    job keeps its newest ``keep_dead_letters`` dead letters.
    """

    def __init__(
        self,
        name: str,
        *,
        keep_jobs: int | None = DEFAULT_KEEP_JOBS,
        keep_dead_letters: int | None = DEFAULT_KEEP_DEAD_LETTERS,
    ) -> None:
        self.name = name
        self.keep_jobs = check_limit("keep_jobs", keep_jobs)
        self.keep_dead_letters = check_limit("keep_dead_letters", keep_dead_letters)
        # Invariants: jobs is replaced (never changed in place) under _lock, so a reader may
        # iterate the list it read without the lock; dropped only grows, under _lock.
        self.jobs: list[Job] = []
        #: How many ended jobs were forgotten to keep at most ``keep_jobs``.
        self.dropped = 0
        self._lock = threading.Lock()

    def create_job(
        self,
        transformations: list[Any],
        *,
        services: dict[str, Any],
        proxy_factory: Callable[[OperatorNode, Job], ProxyManager],
        channel_capacity: int,
        max_batch: int,
        on_done: Callable[[Job], None] | None = None,
        create_task: OperatorTaskFactory = OperatorTask,
        record_at_a_time: bool = False,
    ) -> Job:
        graph = ExecutionGraph.compile(transformations, services)
        with self._lock:
            running = [j for j in self.jobs if not j.done and j.status != "created"]
            if running:
                raise RuntimeError(
                    f"job {running[0].name!r} of this environment is still running; "
                    f"wait for it (job.wait()) or stop it (job.stop()) first"
                )
            job = Job(
                graph,
                name=f"{self.name}-{next(_job_ids)}",
                proxy_factory=proxy_factory,
                channel_capacity=channel_capacity,
                max_batch=max_batch,
                on_done=on_done,
                create_task=create_task,
                record_at_a_time=record_at_a_time,
                keep_dead_letters=self.keep_dead_letters,
            )
            forgotten = self._forget_ended()
            self.jobs = [*self.jobs, job]
            first_drop = forgotten and self.dropped == forgotten
        if first_drop:
            log.warning(
                "environment %r keeps its last %s ended jobs; older ones are forgotten and "
                "counted in dropped. To keep more, create the environment with keep_jobs=N "
                "(None keeps all)",
                self.name,
                self.keep_jobs,
            )
        return job

    def _forget_ended(self) -> int:
        """Under ``_lock``: forget the oldest ended jobs beyond ``keep_jobs``; how many."""
        if self.keep_jobs is None:
            return 0
        ended = [j for j in self.jobs if j.done]
        extra = len(ended) - self.keep_jobs
        if extra <= 0:
            return 0
        gone = {id(j) for j in ended[:extra]}
        self.jobs = [j for j in self.jobs if id(j) not in gone]
        self.dropped += extra
        return extra

    def running(self) -> list[Job]:
        with self._lock:
            return [j for j in self.jobs if j.status == "running"]

    def stop_all(self, timeout: float | None = 5.0) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for job in self.running():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = job.stop(left) and ok
        return ok
