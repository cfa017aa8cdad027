"""``LocalServiceTask``: a service served by worker threads of this process.

::

    request_queue ──get()──▶ sage_nb/service/<name>      (one thread per worker, `concurrency`)
                               │ pending.pop(rid): claim, or skip a withdrawn request
                               │ fn = version.methods[...]; result = fn(*args, **kwargs)
                               └─▶ request.response_target.deliver(response)
                    async def methods ──▶ sage_nb/service-loop/<name> (async_methods.py)

Workers read the current ``ServiceVersion`` once per request, so a swap replaces it between two
requests: queued requests are answered by the new version, and the old one is closed when no
worker is still running it. Stop tokens name their task, so a token left behind by a stuck worker
never stops the workers of a later start.
"""

from __future__ import annotations

import logging
import threading
import time
from queue import Empty
from typing import TYPE_CHECKING

from ...errors import ServiceUnavailableError
from ..messages import RemoteError, ServiceRequest, ServiceResponse
from ..metrics import LatencyWindow, percentiles
from ..threads import make_thread
from .async_methods import AsyncMethods
from .base_service_task import BaseServiceTask, ServiceStatistics, ServiceVersion
from .service_factory import ServiceFactory

if TYPE_CHECKING:
    from ...core.calls import ServiceCaller
    from .context import ServiceContext

__all__ = ["LocalServiceTask"]

log = logging.getLogger(__name__)


class _Stop:
    """Tells one worker of ``owner`` to exit."""

    __slots__ = ("owner",)

    def __init__(self, owner: LocalServiceTask) -> None:
        self.owner = owner


class _Worker:
    """One worker thread and the counters only it writes."""

    __slots__ = (
        "busy",
        "done",
        "expired",
        "failed",
        "index",
        "latency",
        "rejected",
        "since",
        "thread",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.thread: threading.Thread | None = None
        self.busy: ServiceVersion | None = None
        self.since = 0.0  # when the request it is busy with started
        self.done = 0
        self.failed = 0
        self.expired = 0
        self.rejected = 0
        self.latency = LatencyWindow()


class LocalServiceTask(BaseServiceTask):
    """Serves one service on ``factory.options.concurrency`` daemon threads named after it."""

    backend = "threads"

    def __init__(self, context: ServiceContext, factory: ServiceFactory, proxy: ServiceCaller):
        super().__init__(context, factory, proxy)
        #: The queue this task serves: the context's when it was created. A later task of the
        #: same service gets a queue of its own (``Dispatcher``), so stop tokens and requests
        #: left here never reach another task's workers.
        self._queue = context.request_queue
        # Invariants: _version, _workers and _state change under _cond; a worker reads
        # _version without the lock (one reference read) and notifies _cond after finishing a
        # request of a version that is no longer current.
        self._cond = threading.Condition()
        self._version: ServiceVersion | None = None
        self._workers: list[_Worker] = []
        self._loop: AsyncMethods | None = None
        #: Versions replaced by a restart while other workers still ran them; closed by the
        #: last of those workers (``_retire``), or by stop().
        self._retiring: list[ServiceVersion] = []
        #: Set once start() has started every worker; workers serve only then.
        self._ready = threading.Event()
        #: Set by stop(): interrupts a crashed worker's restart backoff.
        self._stopped = threading.Event()
        self.restarts = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Build the service (``setup()`` runs here, on the dispatcher's start thread, while
        callers queue requests) and start its workers; a stop meanwhile wins."""
        with self._cond:
            if self._state == "created":
                self._state = "starting"
        version = self.build_version(self.factory)
        with self._cond:
            if self._state != "starting":  # stopped while it was being built
                stopped = True
            else:
                stopped = False
                self._version = version
                self._state = "running"
                self._spawn(self.factory.options.concurrency)
        self._ready.set()  # every worker runs by now: they may take requests
        if stopped:  # (the dispatcher made the context accept calls before the start)
            self._close_version(version)

    def _spawn(self, n: int) -> None:
        for _ in range(n):
            worker = _Worker(len(self._workers))
            suffix = f"#{worker.index}" if worker.index else ""
            worker.thread = make_thread(
                f"sage_nb/service/{self.name}{suffix}", self._supervise, worker
            )
            self._workers.append(worker)
            worker.thread.start()

    def _alive_workers(self) -> list[_Worker]:
        return [w for w in self._workers if w.thread is not None and w.thread.is_alive()]

    def stop(self, timeout: float | None = 5.0, *, drain: bool = True) -> bool:
        """Stop taking calls, let the workers finish (``drain``: also what is queued), close.

        Requests still queued when the workers are gone, or after ``timeout``, are answered
        with ``ServiceUnavailableError``. Returns False if a worker did not exit in time (it is a
        daemon; its service is closed anyway).
        """
        with self._cond:
            if self._state in ("stopping", "stopped"):
                return True
            if self._state in ("created", "starting"):  # start() closes what it builds
                self._state = "stopped"
                self.context.accepting = False
                self._refusing = True
                self._fail_queued("it was stopped")
                return True
            self._state = "stopping"
            workers = self._alive_workers()
        # A task that went down may be stopped after a new one took its context over: then
        # the context's queue and flags are the new task's, not to be touched here.
        owns = self.context.task is self
        if owns:
            self.context.accepting = False
        self._stopped.set()
        if owns and self.context.waiting:
            self.context.notify_room(everyone=True)
        if not drain:
            self._refusing = True
        for _ in workers:
            self._queue.put(_Stop(self))
        deadline = None if timeout is None else time.monotonic() + timeout
        for w in workers:
            assert w.thread is not None
            w.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        clean = not any(w.thread is not None and w.thread.is_alive() for w in workers)
        self._refusing = True
        if owns:
            self._fail_queued("it was stopped")
        if self._loop is not None:
            self._loop.stop(None if deadline is None else max(0.1, deadline - time.monotonic()))
        with self._cond:
            version, self._state = self._version, "stopped"
            retiring, self._retiring = self._retiring, []
        for old in retiring:
            self._close_version(old)
        if version is not None:
            self._close_version(version)
        if not clean:
            log.warning("service %r: a worker was still busy after %ss", self.name, timeout)
        return clean

    def _fail_queued(self, reason: str) -> None:
        ctx = self.context
        refused = 0
        tokens = []
        while True:
            try:
                request = self._queue.get_nowait()
            except Empty:
                break
            if type(request) is _Stop:
                tokens.append(request)  # a worker still busy needs its token to exit
                continue
            if ctx.pending.pop(request.request_id, None) is not None:
                refused += self.deliver_error(request, ctx.unavailable(reason))
        for token in tokens:
            self._queue.put(token)
        if refused:
            ctx.count_rejected(refused)

    def swap(self, factory: ServiceFactory, timeout: float | None = None) -> None:
        """Replace the running version with one built from ``factory``, losing no request.

        The new version is built first; if its constructor or ``setup()`` raises, the old one
        keeps serving and the exception propagates. Then workers pick the new version for every
        request they start, the old version's running requests finish, and its ``close()`` runs.
        """
        new = self.build_version(factory)
        with self._cond:
            if self._state != "running":
                self._close_version(new)
                raise ServiceUnavailableError(f"service {self.name!r} is {self._state}")
            alive = self._alive_workers()
            if factory.options.concurrency > len(alive):
                self._spawn(factory.options.concurrency - len(alive))
            for _ in range(len(alive) - factory.options.concurrency):
                self._queue.put(_Stop(self))
        self._install(new, wait=True, timeout=timeout)

    def _close_version(self, version: ServiceVersion) -> None:
        try:
            version.close()
        except Exception:
            log.exception("close() of service %r (version %d) raised", self.name, version.number)

    # -- supervision -----------------------------------------------------------------------
    def _supervise(self, worker: _Worker) -> None:
        """Run the worker loop; if it dies (an exception that is not an ``Exception``, such as
        ``SystemExit``, escaped a method), rebuild the service with backoff and go on, up to
        ``factory.options.max_restarts`` times; then the service is down."""
        self._ready.wait()
        while True:
            try:
                self._serve(worker)
                return
            except BaseException as exc:
                worker.busy = None
                what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                reason = f"worker died: {what}"
                log.warning("service %r: %s", self.name, reason)
            limit = self.factory.options.max_restarts
            while True:
                with self._cond:
                    attempt = self.restarts + 1
                    if attempt <= limit:
                        self.restarts = attempt  # counts restarts tried, not the give-up
                if attempt > limit or self._stopped.is_set():
                    self._go_down(
                        f"gave up after {attempt - 1} restarts, max_restarts={limit}; "
                        f"last failure: {reason}"
                    )
                    return
                if self._stopped.wait(min(2.0, 0.05 * 2 ** (attempt - 1))):
                    return
                try:
                    self._install(self.build_version(self.factory), wait=False)
                    break
                except Exception as exc:
                    reason = f"setup failed: {type(exc).__name__}: {exc}"
                    log.warning("service %r: restart failed (%s)", self.name, reason)

    def _go_down(self, reason: str) -> None:
        """Stop serving after repeated crashes: fail what is queued with the reason."""
        if not self._enter_down(self._cond, reason):
            return
        self._fail_queued(f"it is down ({reason})")
        for _ in self._alive_workers():
            self._queue.put(_Stop(self))
        log.error("service %r is down: %s", self.name, reason)

    def _install(self, new: ServiceVersion, *, wait: bool, timeout: float | None = None) -> None:
        """Make ``new`` the version workers run; close the old one once no worker runs it:
        waiting for that here (``wait``, a swap), or else (a restart, on the restarted
        worker's thread) by whichever worker finishes the old version's last request."""
        with self._cond:
            old, self._version, self.factory = self._version, new, new.factory
            if old is None:
                return
            if wait:
                self._cond.wait_for(lambda: all(w.busy is not old for w in self._workers), timeout)
            elif any(w.busy is old for w in self._workers):
                self._retiring.append(old)
                return
        self._close_version(old)

    def _retire(self) -> None:
        """A worker finished a request of a version no longer current: close the versions
        nobody runs any more."""
        with self._cond:
            self._cond.notify_all()
            idle = [v for v in self._retiring if all(w.busy is not v for w in self._workers)]
            for v in idle:
                self._retiring.remove(v)
        for v in idle:
            self._close_version(v)

    # -- the hot loop ----------------------------------------------------------------------
    def _serve(self, worker: _Worker) -> None:
        ctx = self.context
        get = self._queue.get
        claim = ctx.pending.pop
        remember = ctx.recent.append
        monotonic = time.monotonic
        name = self.name
        latency = worker.latency
        samples, mask = latency._samples, latency._mask
        while True:
            request = get()
            if type(request) is _Stop:
                if request.owner is self:
                    return
                continue  # left behind by an earlier start of this service
            if claim(request.request_id, None) is None:
                continue  # withdrawn by its caller: never run it
            if ctx.waiting:
                ctx.notify_room()
            version = self._version
            start = monotonic()
            if self._refusing or (request.deadline is not None and start > request.deadline):
                self._refuse(worker, request)
                continue
            worker.busy = version
            if version is not self._version:  # a swap raced us: run the new version
                version = worker.busy = self._version
            worker.since = start
            assert version is not None
            try:
                fn, is_async = version.methods.get(request.method_name) or version.resolve(
                    name, request.method_name
                )
                if is_async:
                    self._async_methods().schedule(fn, request, start)
                    worker.busy = None
                    continue
                caller = request.context
                if caller is None:
                    result = fn(*request.args, **request.kwargs)
                else:
                    result = caller.run(fn, *request.args, **request.kwargs)
            except Exception as exc:
                elapsed = monotonic() - start
                response = ServiceResponse(
                    request.request_id, False, None, RemoteError.from_exception(exc), elapsed
                )
                worker.failed += 1
            except BaseException as exc:  # SystemExit and the like: this worker dies
                limit = self.factory.options.max_restarts
                left = limit - self.restarts
                after = (
                    "it restarts, so calls may be retried"
                    if left > 0
                    else f"it will not restart (max_restarts={limit} used)"
                )
                worker.failed += 1
                settled = self.deliver_error(
                    request,
                    ServiceUnavailableError(
                        f"service {name!r} died while running this request "
                        f"({type(exc).__name__}: {exc}); {after}"
                    ),
                )
                if not settled:
                    worker.failed -= 1
                raise
            else:
                elapsed = monotonic() - start
                response = ServiceResponse(request.request_id, True, result, None, elapsed)
                worker.done += 1
            worker.busy = None
            # Counted before delivery, so a caller that wakes up sees its call in
            # statistics(); taken back if its caller had given up (it counted the outcome).
            if not request.response_target.deliver(response):  # type: ignore[union-attr]
                if response.success:
                    worker.done -= 1
                else:
                    worker.failed -= 1
            remember((request, response))
            samples[latency.count & mask] = elapsed
            latency.count += 1
            if version is not self._version:
                self._retire()
            if self._state == "stopped":
                return  # stopped while this request ran; its stop token was drained

    def _async_methods(self) -> AsyncMethods:
        runner = self._loop
        if runner is None:
            with self._cond:
                runner = self._loop = self._loop or AsyncMethods(self, _Worker(-1))
        return runner

    def _refuse(self, worker: _Worker, request: ServiceRequest) -> None:
        if self._refusing:
            if self.deliver_error(request, self.context.unavailable("it is stopping")):
                worker.rejected += 1
        elif self.deliver(request, self.expired_response(request)):
            worker.expired += 1

    # -- observation -----------------------------------------------------------------------
    @property
    def version(self) -> ServiceVersion | None:
        return self._version

    def threads(self) -> list[threading.Thread]:
        found = [w.thread for w in self._workers if w.thread is not None and w.thread.is_alive()]
        if self._loop is not None and self._loop.thread.is_alive():
            found.append(self._loop.thread)
        return found

    def outcomes(self) -> tuple[int, int, int, int, int]:
        everyone = self._everyone()
        return (
            sum(w.done for w in everyone),
            sum(w.failed for w in everyone),
            sum(w.expired for w in everyone),
            sum(w.rejected for w in everyone),
            self.restarts,
        )

    def finished(self) -> bool:
        return (
            self._state in ("stopped", "down")
            and all(w.busy is None for w in self._workers)
            and (self._loop is None or not self._loop.active)
        )

    def _everyone(self) -> list[_Worker]:
        return list(self._workers) + ([self._loop.stats] if self._loop is not None else [])

    def statistics(self) -> ServiceStatistics:
        workers = list(self._workers)
        everyone = workers + ([self._loop.stats] if self._loop is not None else [])
        p50, p95, p99 = percentiles(w.latency for w in everyone)
        version = self._version
        return ServiceStatistics(
            name=self.name,
            state=self._state,
            backend=self.backend,
            workers=len(self._alive_workers()),
            version=version.number if version is not None else 0,
            queued=len(self.context.pending),
            in_flight=sum(w.busy is not None for w in workers)
            + (self._loop.active if self._loop is not None else 0),
            done=sum(w.done for w in everyone),
            failed=sum(w.failed for w in everyone),
            timed_out=self.context.timed_out + sum(w.expired for w in everyone),
            cancelled=self.context.cancelled,
            retries=self.context.retries,
            rejected=self.context.rejected + sum(w.rejected for w in everyone),
            restarts=self.restarts,
            p50=p50,
            p95=p95,
            p99=p99,
        )

    def liveness(self, stall_after: float = 5.0) -> tuple[str, str]:
        state = self._state
        if state == "down":
            return "down", self._down_reason
        if state in ("created", "starting"):
            return "starting", "its constructor or setup() runs"
        if state != "running":
            return "stopped", state
        if not self._alive_workers():
            return "down", "no worker thread is alive"
        now = time.monotonic()
        stuck = [now - w.since for w in self._workers if w.busy is not None]
        if stuck and max(stuck) > stall_after:
            return "degraded", f"a request has been running for {max(stuck):.1f} s"
        return "healthy", ""

    def __repr__(self) -> str:
        return f"<LocalServiceTask {self.name!r} {self._state}>"
