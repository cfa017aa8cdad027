"""``RayServiceTask``: a service served by Ray actors, fed from the usual request queue.

::

    callers ──ServiceContext.submit──▶ request_queue ──▶ sage_nb/service/<name>  (forwarder)
                                                          │ backlog (still withdrawable)
                                                          │ claim, pickle, batch per free slot
                                                          └─ replica.handle.remote(frame) ─▶ actor
    Ray's callback thread ◀── ObjectRef completes ───────────────────────────────────────────┘
       │ sync waiters: delivered at once
       └─ _Completed ──▶ request_queue ──▶ forwarder: frees the slot, delivers the rest,
                                            counts, sends the next batch

Callers are unchanged: the same ``ServiceContext``, request ids, deadlines and response
targets as with threads. A request stays in the forwarder's backlog, where its caller can still
withdraw it, until an actor slot is free (``max_concurrency`` per replica, one more batch when
many wait), so a call that times out before being sent never runs; one already sent carries
its deadline and the actor skips it once that passed. Requests that queued up while the actors
were busy go in one Ray call, so a loaded service pays Ray's per-call cost once per batch.

User code never runs on Ray's callback thread: responses whose target may run callbacks are
delivered by the forwarder.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from functools import partial
from queue import Empty
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ...runtime.messages import ServiceRequest, ServiceResponse
from ...runtime.metrics import LatencyWindow, percentiles
from ...runtime.service.base_service_task import (
    BaseServiceTask,
    ServiceFactory,
    ServiceStatistics,
)
from ...runtime.service.futures import AwaitableFuture
from ...runtime.service.service_manager import SyncWaiter
from ...runtime.threads import make_thread
from .errors import ServiceSerializationError, translate_ray_error
from .options import RayServiceOptions, actor_name
from .wire import (
    Batch,
    BatchEntry,
    encode_call,
    pack_batch,
    response_from_wire,
    unpack_reply,
    wall_deadline,
)

if TYPE_CHECKING:
    from ...core.calls import ServiceCaller
    from ...runtime.service.context import ServiceContext
    from .cluster import RayActors

__all__ = ["RayServiceTask"]

log = logging.getLogger(__name__)

#: Most requests in one Ray call.
MAX_BATCH = 256
#: With at least this many requests waiting, each replica gets one batch more than it has
#: threads, so it never idles for a round trip.
PIPELINE_BACKLOG = 8

_actor_class: Any = None


def service_actor_class(ray: Any) -> Any:
    global _actor_class
    if _actor_class is None:
        from .service_actor import ServiceActor

        _actor_class = ray.remote(ServiceActor)
    return _actor_class


class _Replica:
    """One actor of the service and the forwarder's view of it (written by the forwarder)."""

    __slots__ = ("checking", "dead", "handle", "in_flight", "name", "pid", "version")

    def __init__(self, name: str, handle: Any, pid: int, version: int) -> None:
        self.name = name
        self.handle = handle
        self.pid = pid
        self.version = version
        self.in_flight = 0  # Ray calls (batches) sent and not answered
        self.dead = False
        self.checking = False


class _Completed:
    """A batch came back (or failed): put on the request queue for the forwarder."""

    __slots__ = ("failure", "owner", "pid", "replica", "requests", "responses", "version")

    def __init__(
        self,
        owner: RayServiceTask,
        replica: _Replica,
        requests: list[ServiceRequest],
        responses: list[ServiceResponse] | None,
        failure: BaseException | None,
        pid: int = 0,
        version: int = 0,
    ) -> None:
        self.owner = owner
        self.replica = replica
        self.requests = requests
        self.responses = responses
        self.failure = failure
        self.pid = pid
        self.version = version


class _Checked:
    """The answer to a liveness check of a replica that reported ``ActorDiedError``."""

    __slots__ = ("alive", "owner", "pid", "replica")

    def __init__(self, owner: RayServiceTask, replica: _Replica, alive: bool, pid: int) -> None:
        self.owner = owner
        self.replica = replica
        self.alive = alive
        self.pid = pid


class _Stop:
    """Tells the forwarder of ``owner`` to exit (after sending what is queued if ``drain``)."""

    __slots__ = ("drain", "owner")

    def __init__(self, owner: RayServiceTask, drain: bool) -> None:
        self.owner = owner
        self.drain = drain


def _delivers_inline(target: Any) -> bool:
    """True if delivering to ``target`` cannot run user code (safe on Ray's thread)."""
    if type(target) is SyncWaiter:
        return True
    return isinstance(target, AwaitableFuture) and not target.has_done_callbacks()


class RayServiceTask(BaseServiceTask):
    """Serves one service on ``num_replicas`` Ray actors (see the module docstring)."""

    backend = "ray"

    def __init__(
        self,
        context: ServiceContext,
        factory: ServiceFactory,
        proxy: ServiceCaller,
        actors: RayActors,
    ) -> None:
        super().__init__(context, factory, proxy)
        self._actors = actors
        self._ray = actors.ray
        self.options = RayServiceOptions.from_factory(factory.options.backend)
        self.concurrency = self.options.max_concurrency or factory.options.concurrency
        # Invariants: _state changes under _lock. _replicas, _backlog and the counters are
        # written by the forwarder thread only (and by stop() once it has exited). _sent maps
        # the id of every request sent to an actor and not yet answered to the request;
        # whoever pops an id delivers its response, so each is delivered exactly once.
        self._lock = threading.Lock()
        # Held by the forwarder while it works and by a caller sending directly (``_direct``):
        # whoever holds it owns the replicas' in_flight counts, the backlog and the counters.
        self._send_lock = threading.Lock()
        self._replicas: list[_Replica] = []
        self._backlog: deque[ServiceRequest] = deque()
        self._sent: dict[int, ServiceRequest] = {}
        self._thread: threading.Thread | None = None
        self._number = 0
        # Counters: the *_late ones and done are written by Ray's callback thread (answers),
        # the others by the forwarder (calls that failed before or instead of an answer).
        self.done = 0
        self.failed = 0
        self.failed_late = 0
        self.expired = 0
        self.expired_late = 0
        self.restarts = 0
        self.latency = LatencyWindow()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the replicas (each builds the service; ``setup()`` runs there), wait until
        they answer, and start the forwarder."""
        ray = self._ray
        backend = self._actors
        cls = service_actor_class(ray)
        opts = self.options
        options: dict[str, Any] = {
            "max_restarts": self.factory.options.max_restarts,
            "max_task_retries": opts.max_task_retries,
            "max_concurrency": self.concurrency,
        }
        if opts.num_cpus is not None:
            options["num_cpus"] = opts.num_cpus
        if opts.num_gpus is not None:
            options["num_gpus"] = opts.num_gpus
        config = backend.config()
        self._number = 1
        created: list[tuple[str, Any]] = []
        try:
            for i in range(opts.num_replicas):
                name = actor_name(self.name, i)
                created.append(
                    (name, backend.create(cls, name, options, self.factory, config, i, 1))
                )
            answers = ray.get([h.ready.remote() for _, h in created], timeout=backend.start_timeout)
        except BaseException as exc:
            for name, handle in created:
                backend.kill(name, handle)
            raise self._start_error(exc) from exc
        self._replicas = [
            _Replica(name, handle, pid, number)
            for (name, handle), (pid, number) in zip(created, answers)
        ]
        with self._lock:
            self._state = "running"
        self._thread = make_thread(f"sage_nb/service/{self.name}", self._forward)
        self._thread.start()
        self.context.task = self
        self.context.direct = self._direct
        self.context.accepting = True

    def _start_error(self, exc: BaseException) -> BaseException:
        from ray import exceptions as rex

        if isinstance(exc, rex.GetTimeoutError):
            return RuntimeError(
                f"its Ray actors did not start within {self._actors.start_timeout:g} s; "
                f"does the cluster have the resources asked for (num_cpus={self.options.num_cpus},"
                f" num_gpus={self.options.num_gpus})?"
            )
        text = str(exc)
        if "No module named" in text:
            return RuntimeError(
                f"its Ray actor cannot import the code that defines it ({_last_line(text)}); "
                f"define the service in the notebook or script, make its module importable on "
                f"the cluster (RemoteEnvironment(..., runtime_env={{'working_dir': '.'}})), or "
                f"call ray.cloudpickle.register_pickle_by_value(module)"
            )
        if isinstance(exc, rex.RayActorError):
            return RuntimeError(f"its Ray actor died while starting: {_error_summary(text)}")
        return exc

    def stop(self, timeout: float | None = 5.0, *, drain: bool = True) -> bool:
        """Stop taking calls; with ``drain`` send what is queued and wait for the answers;
        then run ``close()`` in every replica and kill them.

        Calls still unanswered are failed with ``ServiceUnavailableError``. Returns False if
        the forwarder or a replica's ``close()`` did not finish within ``timeout``.
        """
        with self._lock:
            if self._state in ("stopping", "stopped"):
                return True
            self._state = "stopping"
        ctx = self.context
        ctx.accepting = False
        if ctx.direct == self._direct:
            ctx.direct = None
        with self._send_lock:
            pass  # a caller sending directly has finished; later ones see "stopping"
        if ctx.waiting:
            ctx.notify_room(everyone=True)
        deadline = None if timeout is None else time.monotonic() + timeout

        def left(floor: float = 0.0) -> float | None:
            return None if deadline is None else max(floor, deadline - time.monotonic())

        thread = self._thread
        if not drain:
            self._refusing = True
        if thread is not None and thread.is_alive():
            ctx.request_queue.put(_Stop(self, drain))
            thread.join(left())
            if thread.is_alive():  # still waiting for answers: stop waiting
                ctx.request_queue.put(_Stop(self, False))
                thread.join(1.0)
        clean = thread is None or not thread.is_alive()
        self._refusing = True
        self._fail_waiting(ctx.unavailable("it was stopped"))
        clean = self._shutdown_replicas(left(0.1)) and clean
        with self._lock:
            self._state = "stopped"
        return clean

    def _shutdown_replicas(self, timeout: float | None) -> bool:
        ray = self._ray
        replicas = [r for r in self._replicas if not r.dead]
        clean = True
        if replicas and ray.is_initialized():
            refs = {}
            for r in replicas:
                try:
                    refs[r.handle.close.remote()] = r
                except Exception as exc:
                    log.debug("close() of %s not sent: %s", r.name, exc)
            ready, pending = ray.wait(
                list(refs), num_returns=len(refs), timeout=min(2.0, timeout or 2.0)
            )
            clean = not pending
            for ref in ready:
                try:
                    error = ray.get(ref)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {_error_summary(str(exc))}"
                if error:
                    log.warning("close() of service %r raised %s", self.name, error)
        for r in self._replicas:
            self._actors.kill(r.name, r.handle)
            r.dead = True
        return clean

    def _fail_waiting(self, exc: BaseException, *, queue: bool = True) -> None:
        """Answer every request not answered yet: the backlog, the sent ones and (``queue``,
        only once the forwarder has exited) the request queue."""
        ctx = self.context
        claim = ctx.pending.pop
        while self._backlog:
            request = self._backlog.popleft()
            if claim(request.request_id, None) is not None:
                self._deliver_error(request, exc)
        for rid in list(self._sent):
            sent = self._sent.pop(rid, None)
            if sent is not None:
                self._deliver_error(sent, exc)
        while queue:
            try:
                item = ctx.request_queue.get_nowait()
            except Empty:
                break
            if type(item) is ServiceRequest and claim(item.request_id, None) is not None:
                self._deliver_error(item, exc)

    def swaps_in_place(self, factory: ServiceFactory) -> bool:
        """The running actors can take ``factory``'s version unless it changes how they run:
        replicas, resources, calls at once or restarts (then the service restarts)."""
        options = RayServiceOptions.from_factory(factory.options.backend)
        return (
            options == self.options
            and (options.max_concurrency or factory.options.concurrency) == self.concurrency
            and factory.options.max_restarts == self.factory.options.max_restarts
        )

    def swap(self, factory: ServiceFactory, timeout: float | None = None) -> None:
        """Build ``factory``'s version in every replica, then serve it (see
        ``ServiceActor.swap``); if building fails, the old version keeps serving. The
        actors keep their options (``swaps_in_place``)."""
        ray = self._ray
        with self._lock:
            if self._state != "running":
                from ...errors import ServiceUnavailableError

                raise ServiceUnavailableError(f"service {self.name!r} is {self._state}")
        number = self._number + 1
        wait = self._actors.start_timeout if timeout is None else timeout
        live = [r for r in self._replicas if not r.dead]
        for i, replica in enumerate(live):
            try:
                ray.get(replica.handle.swap.remote(factory, number), timeout=wait)
            except Exception as exc:
                if i == 0:  # nothing changed yet: the caller sees why
                    raise _swap_error(exc) from exc
                log.warning("service %r: replica %s did not swap: %s", self.name, replica.name, exc)
        self._number = number
        self.factory = factory

    # -- the forwarder ---------------------------------------------------------------------
    def _forward(self) -> None:
        ctx = self.context
        get = ctx.request_queue.get
        get_nowait = ctx.request_queue.get_nowait
        backlog = self._backlog
        lock = self._send_lock
        stopping: _Stop | None = None
        while True:
            item = get()
            with lock:
                while True:
                    kind = type(item)
                    if kind is ServiceRequest:
                        backlog.append(item)
                    elif getattr(item, "owner", None) is self:
                        if kind is _Completed:
                            self._complete(item)
                        elif kind is _Stop:
                            stopping = item
                        elif kind is _Checked:
                            self._checked(item)
                    try:
                        item = get_nowait()
                    except Empty:
                        break
                if backlog:
                    self._flush()
            if stopping is not None and (
                not stopping.drain or not (backlog or self._sent) or self._state == "down"
            ):
                return

    def _direct(self, request: ServiceRequest) -> bool:
        """The caller's thread sends ``request`` itself when nothing waits before it and an
        actor slot is free (the common case of a sync call to an idle service): one thread
        hop less than going through the forwarder. Returns False to leave it to the queue."""
        lock = self._send_lock
        if not lock.acquire(blocking=False):
            return False  # the forwarder is working: it takes the request in turn
        try:
            if self._state != "running" or self._refusing or self._backlog:
                return False
            if not self.context.request_queue.empty():
                return False  # keep arrival order
            free = [
                r
                for r in self._replicas
                if not r.dead and not r.checking and r.in_flight < self.concurrency
            ]
            if not free:
                return False
            if self.context.pending.pop(request.request_id, None) is None:
                return True  # already withdrawn (cannot happen before submit returns)
            if self.context.waiting:
                self.context.notify_room()
            replica = min(free, key=lambda r: r.in_flight)
            entry = self._encode(request)
            if entry is None:
                return True
            wire = [entry]
            waiter = request.response_target
            if type(waiter) is SyncWaiter:
                # The caller waits in ray.get itself (see _fetch) rather than for a callback.
                ref = self._send(replica, [request], wire, watch=False)
                if ref is not None:
                    waiter.fetch = partial(self._fetch, replica, request, ref)
            else:
                self._send(replica, [request], wire)
            return True
        finally:
            lock.release()

    def _fetch(
        self, replica: _Replica, request: ServiceRequest, ref: Any, timeout: float | None
    ) -> bool:
        """A sync caller's wait for a request it sent directly: ``ray.get`` in its own thread,
        then the same handling as a callback's. True if the response was delivered in time."""
        waiter = request.response_target
        assert type(waiter) is SyncWaiter
        deadline = None if timeout is None else time.monotonic() + timeout
        requests = [request]
        try:
            data = self._ray.get(ref, timeout=timeout)
        except BaseException as exc:
            from ray import exceptions as rex

            if isinstance(exc, (rex.GetTimeoutError, KeyboardInterrupt, SystemExit)):
                # The answer (or failure) still comes: settle the slot and counts then.
                ref._on_completed(partial(self._on_result, replica, requests, ref))
                if isinstance(exc, rex.GetTimeoutError):
                    return waiter.lock.acquire(False)
                raise
            data = exc
        self._on_result(replica, requests, ref, data)
        # A success was delivered above; a failure goes through the forwarder.
        left = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        return waiter.lock.acquire(True, left)

    def _flush(self) -> None:
        backlog = self._backlog
        ctx = self.context
        claim = ctx.pending.pop
        while backlog:
            if self._refusing:
                reason = self._down_reason or "it is stopping"
                self._fail_waiting(ctx.unavailable(reason), queue=False)
                return
            live = [r for r in self._replicas if not r.dead and not r.checking]
            if not live:
                return
            extra = 1 if len(backlog) >= PIPELINE_BACKLOG else 0
            free = [r for r in live if r.in_flight < self.concurrency + extra]
            if not free:
                return
            replica = min(free, key=lambda r: r.in_flight)
            slots = sum(self.concurrency + extra - r.in_flight for r in free)
            size = min(MAX_BATCH, max(1, math.ceil(len(backlog) / slots)))
            requests: list[ServiceRequest] = []
            wire: Batch = []
            while backlog and len(wire) < size:
                request = backlog.popleft()
                if claim(request.request_id, None) is None:
                    continue  # withdrawn by its caller: never sent
                if ctx.waiting:
                    ctx.notify_room()
                if request.deadline is not None and time.monotonic() > request.deadline:
                    self.expired += 1
                    self._deliver(request, self.expired_response(request))
                    continue
                entry = self._encode(request)
                if entry is not None:
                    wire.append(entry)
                    requests.append(request)
            if wire:
                self._send(replica, requests, wire)

    def _encode(self, request: ServiceRequest) -> BatchEntry | None:
        """``request`` as a batch entry; None once it failed because its arguments cannot be
        pickled (only this call fails: see ``encode_call``)."""
        try:
            payload = encode_call(self.name, request.method_name, request.args, request.kwargs)
        except ServiceSerializationError as exc:
            self.failed += 1
            self._deliver_error(request, exc)
            return None
        return request.request_id, wall_deadline(request.deadline), payload

    def _send(
        self,
        replica: _Replica,
        requests: list[ServiceRequest],
        wire: Batch,
        *,
        watch: bool = True,
    ) -> Any:
        """Send a batch to ``replica``; return its ObjectRef (None if sending failed). With
        ``watch``, its result is handled by ``_on_result`` on Ray's callback thread."""
        for request in requests:
            self._sent[request.request_id] = request
        try:
            ref = replica.handle.handle.remote(*pack_batch(wire))
        except Exception as exc:
            self._fail_sent(requests, translate_ray_error(exc, self.name, "handle"))
            return None
        replica.in_flight += 1
        if watch:
            ref._on_completed(partial(self._on_result, replica, requests, ref))
        return ref

    def _on_result(
        self, replica: _Replica, requests: list[ServiceRequest], ref: Any, data: Any
    ) -> None:
        """Ray's callback thread: decode, count, deliver to waiters that run no user code, and
        hand the rest to the forwarder. Counting comes first, so a caller that wakes up sees
        its call in ``statistics()``."""
        if not isinstance(data, BaseException):
            try:
                pid, version, entries = unpack_reply(data)
            except Exception as exc:  # an unreadable reply fails its calls: they never hang
                data = exc
        if isinstance(data, BaseException):
            self.context.request_queue.put(_Completed(self, replica, requests, None, data))
            return
        name = self.name
        responses = [
            response_from_wire(entry, name, request.method_name, request.timeout)
            for request, entry in zip(requests, entries)
        ]
        remember = self.context.recent.append
        samples = self.latency
        for request, response in zip(requests, responses):
            remember((request, response))
            if response.success:
                self.done += 1
            elif _expired(response):
                self.expired_late += 1
                continue
            else:
                self.failed_late += 1
            samples.add(response.execution_time)
        sent = self._sent
        rest = False
        for request, response in zip(requests, responses):
            target = request.response_target
            if _delivers_inline(target):
                if sent.pop(request.request_id, None) is not None:
                    target.deliver(response)  # type: ignore[union-attr]
            else:
                rest = True
        item = _Completed(self, replica, requests, responses, None, pid, version)
        # Nothing left for the forwarder (no user callback to run, nothing waiting for this
        # slot): settle the batch here instead of waking it.
        lock = self._send_lock
        if not rest and lock.acquire(blocking=False):
            try:
                if (
                    self._state == "running"
                    and not self._backlog
                    and self.context.request_queue.empty()
                ):
                    self._complete(item)
                    return
            finally:
                lock.release()
        self.context.request_queue.put(item)

    def _complete(self, item: _Completed) -> None:
        replica = item.replica
        replica.in_flight -= 1
        if item.failure is not None:
            self._batch_failed(replica, item.requests, item.failure)
            return
        assert item.responses is not None
        if item.pid != replica.pid:  # Ray restarted the actor since we last heard from it
            self.restarts += 1
            replica.pid = item.pid
        if item.version < self._number:  # restarted with its original version: swap forward
            self._reswap(replica)
        sent = self._sent
        for request, response in zip(item.requests, item.responses):
            if sent.pop(request.request_id, None) is not None:
                request.response_target.deliver(response)  # type: ignore[union-attr]

    def _batch_failed(
        self, replica: _Replica, requests: list[ServiceRequest], failure: BaseException
    ) -> None:
        from ray import exceptions as rex

        method = requests[0].method_name if len(requests) == 1 else "handle"
        if isinstance(failure, rex.ActorDiedError) and not replica.checking:
            self._check(replica)  # restarts are counted when a replica answers with a new pid
        for request in requests:
            exc = translate_ray_error(failure, self.name, request.method_name or method)
            if self._sent.pop(request.request_id, None) is not None:
                self.failed += 1
                self._deliver_error(request, exc)

    def _check(self, replica: _Replica) -> None:
        """Ask a replica that reported ``ActorDiedError`` whether it is really gone."""
        replica.checking = True
        try:
            ref = replica.handle.ready.remote()
        except Exception as exc:
            log.debug("service %r: %s does not answer: %s", self.name, replica.name, exc)
            self._checked(_Checked(self, replica, False, 0))
            return

        def answer(data: Any, ref: Any = ref) -> None:
            alive = not isinstance(data, BaseException)
            pid = data[0] if alive else 0
            self.context.request_queue.put(_Checked(self, replica, alive, pid))

        ref._on_completed(answer)

    def _checked(self, item: _Checked) -> None:
        replica = item.replica
        replica.checking = False
        if item.alive:
            if item.pid != replica.pid:
                self.restarts += 1
                replica.pid = item.pid
            return
        replica.dead = True
        if all(r.dead for r in self._replicas):
            self._go_down(
                f"its Ray actors died and were not restarted (max_restarts="
                f"{self.factory.options.max_restarts})"
            )

    def _go_down(self, reason: str) -> None:
        if not self._enter_down(self._lock, reason):
            return
        self._fail_waiting(self.context.unavailable(f"it is down ({reason})"), queue=False)
        log.error("service %r is down: %s", self.name, reason)

    def _reswap(self, replica: _Replica) -> None:
        number, factory = self._number, self.factory
        if replica.version >= number:
            return
        replica.version = number  # once per restart; a failure is logged below
        try:
            ref = replica.handle.swap.remote(factory, number)
        except Exception as exc:
            log.warning("service %r: could not update %s: %s", self.name, replica.name, exc)
            return

        def done(data: Any, ref: Any = ref) -> None:
            if isinstance(data, BaseException):
                log.warning("service %r: updating %s failed: %s", self.name, replica.name, data)

        ref._on_completed(done)

    # -- delivering ------------------------------------------------------------------------
    def _fail_sent(self, requests: list[ServiceRequest], exc: BaseException) -> None:
        for request in requests:
            if self._sent.pop(request.request_id, None) is not None:
                self.failed += 1
                self._deliver_error(request, exc)

    # -- observation -----------------------------------------------------------------------
    @property
    def version(self) -> Any:
        """The current version number, and the registered target (for health checks)."""
        return SimpleNamespace(number=self._number, instance=self.factory.target)

    def threads(self) -> list[threading.Thread]:
        t = self._thread
        return [t] if t is not None and t.is_alive() else []

    def actor_names(self) -> list[str]:
        return [r.name for r in self._replicas]

    def statistics(self) -> ServiceStatistics:
        p50, p95, p99 = percentiles([self.latency])
        return ServiceStatistics(
            name=self.name,
            state=self._state,
            backend=self.backend,
            workers=sum(not r.dead for r in self._replicas),
            version=self._number,
            queued=len(self.context.pending),
            in_flight=len(self._sent),
            done=self.done,
            failed=self.failed + self.failed_late,
            timed_out=self.context.timed_out + self.expired + self.expired_late,
            cancelled=self.context.cancelled,
            retries=self.context.retries,
            restarts=self.restarts,
            p50=p50,
            p95=p95,
            p99=p99,
        )

    def liveness(self) -> tuple[str, str]:
        state = self._state
        if state == "down":
            return "down", self._down_reason
        if state != "running":
            return "stopped", state
        dead = sum(r.dead for r in self._replicas)
        if dead == len(self._replicas):
            return "down", "no Ray actor is alive"
        if dead or any(r.checking for r in self._replicas):
            return "degraded", f"{dead} of {len(self._replicas)} Ray actors are gone"
        return "healthy", ""

    def __repr__(self) -> str:
        return f"<RayServiceTask {self.name!r} {self._state} x{len(self._replicas)}>"


def _expired(response: ServiceResponse) -> bool:
    error = response.error
    return error is not None and error.type_name == "ServiceTimeoutError" and not error.traceback


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def _error_summary(text: str) -> str:
    """The most telling line of a Ray error: the exception line of the innermost traceback."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if ":" in line and not line.startswith(("File ", "^", "~")):
            return line
    return lines[0] if lines else text


def _swap_error(exc: BaseException) -> BaseException:
    """The error a failed swap raises: the service's own when Ray reports it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    return exc
