"""Operator tasks of a ``RemoteEnvironment``: parallel regions on Ray actors, the rest on threads.

::

    upstream task ──(port, batch)──▶ Channel ──▶ sage_nb/task/<region>#i  (driver thread)
                                                   │ process.remote(port, batch), up to
                                                   │ IN_FLIGHT batches ahead, answers in order
                                                   ▼
                                              OperatorActor (functions, ChainProgram)
                                                   │ (outputs, counts, ...)
    downstream channels ◀── _send(outputs) ◀──────┘  counts accounted on the driver's nodes

A region runs on Ray when its parallelism is above 1 and it has no source or sink: sources read
the user's data where it is, and sinks such as ``sink(results.append)`` fill the user's list.
Other regions are ordinary ``OperatorTask`` threads. Either way keyed edges partition with
``partition_hash``, so every instance in every process sends a key to the same place.

A ``RemoteOperatorTask`` has the interface ``Job`` relies on: ``channel``, ``targets``,
``program.out_edges`` (and ``program.account``), ``thread``, ``start()`` and ``abort()``. Its
``program`` is compiled on the driver with placeholder functions only for the edge layout and
the accounting; the functions themselves exist only in the actor.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, InvalidStateError, wait
from typing import TYPE_CHECKING, Any

from ...errors import JobCancelledError, OperatorError
from ...runtime.chain import ChainProgram
from ...runtime.channel import CLOSED, Channel, ChannelClosed
from ...runtime.tasks import OperatorTask
from ...runtime.threads import make_thread
from .errors import error_summary
from .partition import install_partition_hash

if TYPE_CHECKING:
    from ...runtime.graph import Region
    from ...runtime.job_manager import Job
    from .cluster import RayActors

__all__ = ["RemoteOperatorTask", "create_operator_task", "runs_on_ray"]

log = logging.getLogger(__name__)

#: Batches a driver thread keeps in flight to its actor.
IN_FLIGHT = 4
#: Seconds a stopping task gives its actor to run the functions' close() before killing it.
CLOSE_GRACE = 1.0

_actor_class: Any = None


def operator_actor_class(ray: Any) -> Any:
    global _actor_class
    if _actor_class is None:
        from .operator_actor import OperatorActor

        _actor_class = ray.remote(concurrency_groups={"control": 1})(OperatorActor)
    return _actor_class


def runs_on_ray(region: Region) -> bool:
    """Whether a ``RemoteEnvironment`` runs ``region``'s instances as actors: parallel regions,
    except those with a source or a sink, and those a feedback loop feeds (a loop learns on
    the driver that it has died out)."""
    return (
        region.parallelism > 1
        and not any(n.kind in ("source", "sink") for n in region.nodes)
        and not any(e.feedback for e in region.remote_inputs)
    )


def create_operator_task(
    job: Job, region: Region, index: int, capacity: int, actors: RayActors
) -> OperatorTask:
    """The task of one instance of ``region`` in a ``RemoteEnvironment``: an actor fed by a
    driver thread for a parallel region, a thread otherwise (see the module docstring)."""
    if runs_on_ray(region):
        return RemoteOperatorTask(job, region, index, capacity, actors)
    task = OperatorTask(job, region, index, capacity)
    install_partition_hash(task.program)
    return task


def _placeholder(*args: Any) -> Any:  # pragma: no cover - never called on the driver
    raise AssertionError("a remote operator's function ran on the driver")


class _Aborted(Exception):
    """The job stopped while the driver thread waited for its actor."""


class RemoteOperatorTask(OperatorTask):
    """One parallel instance of a region, run by an actor and fed by a driver thread."""

    def __init__(
        self, job: Job, region: Region, index: int, channel_capacity: int, backend: RayActors
    ) -> None:
        # Not OperatorTask.__init__: it would create the functions here, on the driver.
        self.job = job
        self.region = region
        self.index = index
        self.channel = Channel(channel_capacity)
        self.functions = {}
        placeholders = {n.id: _placeholder for n in region.nodes if n.factory is not None}
        self.program = ChainProgram(region, index, placeholders, job.dead_letters.append)
        self.targets = []
        self._round_robin = [itertools.count(index) for _ in self.program.out_edges]
        self._backend = backend
        self._aborted: Future[None] = Future()
        self.actor_name = f"task.{job.name}.{region.label}#{index}"
        suffix = f"#{index}" if index else ""
        self.thread = make_thread(f"sage_nb/task/{region.label}{suffix}", self._run)

    def abort(self) -> None:
        """The job is stopping: wake the thread, whether it waits for input or for Ray."""
        super().abort()
        try:
            self._aborted.set_result(None)
        except InvalidStateError:
            pass

    # -- the driver thread -----------------------------------------------------------------
    def _run(self) -> None:
        job = self.job
        actor = None
        opened = False
        try:
            from .region import detach_region

            backend = self._backend
            actor = backend.create(
                operator_actor_class(backend.ray),
                self.actor_name,
                {},
                detach_region(self.region),
                self.index,
                backend.config(),
                job.name,
            )
            self._raise(self._wait(actor.open.remote(), "starting"))
            opened = True
            self._run_batches(actor)
            if not job.stopping:
                opened = False
                self._raise(self._wait(actor.finish.remote(), "close()"))
                self._send_end()
        except (JobCancelledError, ChannelClosed, _Aborted):
            if not job.stopping:  # pragma: no cover - only a stopping job cancels
                job.task_failed(RuntimeError(f"task {self.thread.name} cancelled unexpectedly"))
        except BaseException as exc:
            job.task_failed(exc)
        finally:
            if actor is not None:
                self._release(actor, opened)
            job.task_finished(self)

    def _run_batches(self, actor: Any) -> None:
        job = self.job
        channel = self.channel
        assert channel is not None
        label = self.region.head.label
        in_flight: deque[tuple[Future[Any], int]] = deque()
        open_inputs = sum(e.upstream.parallelism for e in self.region.remote_inputs)
        while open_inputs or in_flight:
            if in_flight and (not open_inputs or len(in_flight) >= IN_FLIGHT or not len(channel)):
                future, size = in_flight.popleft()
                self._finish_batch(self._wait_future(future, "processing a batch"), size)
                if job.stopping:
                    return
                continue
            message = channel.get()
            if message is CLOSED:
                return
            port, batch = message
            if batch is None:
                open_inputs -= 1
                continue
            try:
                ref = actor.process.remote(port, batch)
            except Exception as exc:
                no = OperatorError.NO_RECORD
                raise OperatorError(label, no, exc, phase="sending a batch to Ray") from exc
            in_flight.append((ref.future(), len(batch)))

    def _finish_batch(self, answer: Any, size: int) -> None:
        if answer[0] != "ok":
            exc = answer[1]
            if isinstance(exc, JobCancelledError) and self.job.stopping:
                return
            raise exc
        _, outputs, counts, errors, letters, calls = answer
        if errors or calls:
            nodes = {n.id: n for n in self.region.nodes}
            for node_id, n in errors:  # accounted with the batch's records, just below
                nodes[node_id].counters[self.index].errors_pending += n
            for node_id, names in calls:
                nodes[node_id].calls.update(names)
        self.program.account(size, counts)
        if letters:
            self.job.dead_letters.extend(letters)
        if outputs:
            self._send(outputs)

    def _wait(self, ref: Any, phase: str) -> Any:
        return self._wait_future(ref.future(), phase)

    def _wait_future(self, future: Future[Any], phase: str) -> Any:
        """The actor's answer, or ``_Aborted`` if the job stops first."""
        done, _ = wait([future, self._aborted], return_when=FIRST_COMPLETED)
        if future not in done:
            raise _Aborted
        try:
            return future.result()
        except Exception as exc:
            raise self._ray_failure(exc, phase) from exc

    def _raise(self, failure: BaseException | None) -> None:
        if failure is not None:
            raise failure

    def _ray_failure(self, exc: BaseException, phase: str) -> BaseException:
        label = self.region.head.label
        text = error_summary(str(exc))
        if "No module named" in str(exc):
            text += (
                "; the actor cannot import the code of this operator: define it in the notebook "
                "or script, or make its module importable on the cluster"
            )
        cause = RuntimeError(f"{type(exc).__name__}: {text}")
        return OperatorError(label, OperatorError.NO_RECORD, cause, phase=f"{phase} on Ray")

    def _release(self, actor: Any, opened: bool) -> None:
        """Give the functions their ``close()`` if they did not get it, then kill the actor."""
        ray = self._backend.ray
        if opened and ray.is_initialized():
            try:
                actor.cancel.remote()
                ready, _ = ray.wait([actor.finish.remote()], timeout=CLOSE_GRACE)
                for ref in ready:
                    failure = ray.get(ref)
                    if failure is not None:
                        log.warning("%s: close() failed after the job ended: %s", self, failure)
            except Exception as exc:
                log.debug("%s: close() not run: %s", self, exc)
        self._backend.kill(self.actor_name, actor)

    def __repr__(self) -> str:
        return f"<RemoteOperatorTask {self.thread.name} on Ray>"
