"""``Forwarder``: how a ``RayServiceTask``'s requests reach its actors.

::

    callers ──ServiceContext.submit──▶ request_queue ──▶ sage_nb/service/<name>  (Forwarder._run)
       │                                                  │ backlog (still withdrawable)
       │ Forwarder.direct: nothing queued,                │ claim, pickle, batch per free slot
       │ an actor slot free                               │
       └──────────────────────────────────────────────────┴─ replica.handle.remote(frame) ─▶ actor
    Ray's callback thread ◀── ray_compat.on_completed ────────────────────────────────────────┘
       │ Replies.on_result: sync waiters delivered at once
       └─ Completed ──▶ request_queue ──▶ forwarder: Replies.complete frees the slot, delivers
                                            the rest, counts; then it sends the next batch

A request stays in the forwarder's backlog, where its caller can still withdraw it, until an
actor slot is free (``max_concurrency`` per replica, one more batch when many wait), so a call
that times out before being sent never runs; one already sent carries its deadline and the
actor skips it once that passed. Requests that queued up while the actors were busy go in one
Ray call, so a loaded service pays Ray's per-call cost once per batch. A sync call to an idle
service skips the queue: the caller's thread sends it (``direct``) and waits in ``ray.get``
itself (``Replies.fetch``).

How answers are counted and delivered is ``replies.py``'s business. No response is delivered
under the send lock: what its holder settles waits in ``Replies.outbox`` until the lock is
released (every path that takes the lock flushes after it), and delivering runs no user code
(futures hand their callbacks to the environment's callback thread). A restarting actor's
refusals come back here (``requeue``): those calls wait in the backlog for it, within their
deadlines.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from functools import partial
from queue import Empty
from typing import TYPE_CHECKING, Any

from ...runtime.messages import ServiceRequest
from ...runtime.service.service_manager import SyncWaiter
from ...runtime.threads import make_thread
from .errors import ServiceSerializationError, translate_ray_error
from .ray_compat import on_completed
from .replies import Checked, Completed, Replies
from .wire import Batch, BatchEntry, encode_call, pack_batch, wall_deadline

if TYPE_CHECKING:
    from .replicas import Replica, Replicas
    from .service_task import RayServiceTask

__all__ = ["MAX_BATCH", "PIPELINE_BACKLOG", "Forwarder"]

#: Most requests in one Ray call.
MAX_BATCH = 256
#: With at least this many requests waiting, each replica gets one batch more than it has
#: threads, so it never idles for a round trip.
PIPELINE_BACKLOG = 8


class _Stop:
    """Tells the forwarder ``owner`` to exit (after sending what is queued if ``drain``)."""

    __slots__ = ("drain", "owner")

    def __init__(self, owner: Forwarder, drain: bool) -> None:
        self.owner = owner
        self.drain = drain


class Forwarder:
    """Sends ``task``'s requests to its ``replicas`` (see the module docstring); ``replies``
    answers them.

    It reads the task's public face (``context``, ``name``, ``concurrency``, ``state``,
    ``refusal``) and answers a request with the task's ``deliver`` / ``deliver_error``.
    """

    def __init__(
        self,
        task: RayServiceTask,
        replicas: Replicas,
        ray: Any,
    ) -> None:
        self.task = task
        self.context = task.context
        self.name = task.name
        self.concurrency = task.concurrency
        self.replicas = replicas
        #: The queue this task serves (the context's when it was created; a later task of the
        #: service gets its own): requests, and the answers and probes Ray hands back.
        self.queue = task.context.request_queue
        self.replies = Replies(self, task, replicas, ray)
        # Held by the forwarder thread while it works and by a caller sending directly
        # (``direct``). Invariants: whoever holds it owns the replicas (their in_flight counts,
        # dead and checking flags), the backlog and the replies' ``sent`` ledger; the task's
        # stop() takes them over once the thread has exited. Whoever releases it calls
        # ``replies.flush()``.
        self._send_lock = threading.Lock()
        self._backlog: deque[ServiceRequest] = deque()
        self.thread: threading.Thread | None = None

    # -- the task's side -------------------------------------------------------------------
    def start(self) -> None:
        """Start the forwarder thread (the replicas answer by now)."""
        self.thread = make_thread(f"sage_nb/service/{self.name}", self._run)
        self.thread.start()

    def wait_for_senders(self) -> None:
        """Return once no caller is sending directly (later ones see the task stopping)."""
        with self._send_lock:
            pass
        self.replies.flush()

    def stop(self, timeout: float | None, *, drain: bool) -> bool:
        """Tell the thread to exit, with ``drain`` once what is queued is sent and answered;
        wait ``timeout`` for it, then 1 s more after telling it to stop waiting for answers.
        True if it exited (or never started)."""
        thread = self.thread
        if thread is not None and thread.is_alive():
            self.queue.put(_Stop(self, drain))
            thread.join(timeout)
            if thread.is_alive():  # still waiting for answers: stop waiting
                self.queue.put(_Stop(self, False))
                thread.join(1.0)
        return thread is None or not thread.is_alive()

    def fail_waiting(self, exc: BaseException, *, queue: bool = True) -> None:
        """Answer every request not answered yet: the backlog, the sent ones and (``queue``,
        only once the forwarder has exited) the request queue."""
        ctx = self.context
        claim = ctx.pending.pop
        replies = self.replies
        while self._backlog:
            request = self._backlog.popleft()
            if claim(request.request_id, None) is not None:
                replies.reject(request, exc)
        replies.fail_all(exc)
        while queue:
            try:
                item = self.queue.get_nowait()
            except Empty:
                break
            if type(item) is ServiceRequest and claim(item.request_id, None) is not None:
                replies.reject(item, exc)

    def requeue(self, requests: list[ServiceRequest]) -> None:
        """Under the send lock: put requests a restarting actor refused (they never ran) back
        at the front of the backlog, withdrawable again, in their order."""
        pending = self.context.pending
        for request in reversed(requests):
            pending[request.request_id] = request
            self._backlog.appendleft(request)

    def settle_if_idle(self, item: Completed) -> bool:
        """Ray's callback thread: complete ``item`` here if the forwarder has nothing else to
        do (it works, or requests wait for it: False, put ``item`` on the queue instead)."""
        lock = self._send_lock
        if not lock.acquire(blocking=False):
            return False
        try:
            if self.task.state == "running" and not self._backlog and self.queue.empty():
                self.replies.complete(item)
                return True
            return False
        finally:
            lock.release()
            self.replies.flush()

    # -- the forwarder thread --------------------------------------------------------------
    def _run(self) -> None:
        get = self.queue.get
        get_nowait = self.queue.get_nowait
        backlog = self._backlog
        replies = self.replies
        sent = replies.sent
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
                        if kind is Completed:
                            replies.complete(item)
                        elif kind is _Stop:
                            stopping = item
                        elif kind is Checked:
                            replies.checked(item)
                    try:
                        item = get_nowait()
                    except Empty:
                        break
                if backlog:
                    self._flush()
            replies.flush()
            if stopping is not None and (
                not stopping.drain or not (backlog or sent) or self.task.state == "down"
            ):
                return

    # -- sending from the caller's thread --------------------------------------------------
    def direct(self, request: ServiceRequest) -> bool:
        """The caller's thread sends ``request`` itself when nothing waits before it and an
        actor slot is free (the common case of a sync call to an idle service): one thread
        hop less than going through the forwarder. Returns False to leave it to the queue."""
        lock = self._send_lock
        if not lock.acquire(blocking=False):
            return False  # the forwarder is working: it takes the request in turn
        try:
            task = self.task
            if task.state != "running" or task.refusal is not None or self._backlog:
                return False
            if not self.queue.empty():
                return False  # keep arrival order
            free = [
                r
                for r in self.replicas.members
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
                # The caller waits in ray.get itself (Replies.fetch) rather than for a callback.
                ref = self._send(replica, [request], wire, watch=False)
                if ref is not None:
                    waiter.fetch = partial(self.replies.fetch, replica, request, ref)
            else:
                self._send(replica, [request], wire)
            return True
        finally:
            lock.release()
            self.replies.flush()

    # -- sending batches -------------------------------------------------------------------
    def _flush(self) -> None:
        backlog = self._backlog
        ctx = self.context
        claim = ctx.pending.pop
        while backlog:
            reason = self.task.refusal
            if reason is not None:
                self.fail_waiting(ctx.unavailable(reason), queue=False)
                return
            live = [r for r in self.replicas.members if not r.dead and not r.checking]
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
                    self.replies.expire_unsent(request)
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
            self.replies.fail_unsent(request, exc)
            return None
        return request.request_id, wall_deadline(request.deadline), payload

    def _send(
        self,
        replica: Replica,
        requests: list[ServiceRequest],
        wire: Batch,
        *,
        watch: bool = True,
    ) -> Any:
        """Send a batch to ``replica``; return its ObjectRef (None if sending failed). With
        ``watch``, its result is handled by ``Replies.on_result`` on Ray's callback thread."""
        replies = self.replies
        sent = replies.sent
        for request in requests:
            sent[request.request_id] = request
        try:
            ref = replica.handle.handle.remote(*pack_batch(wire))
        except Exception as exc:
            replies.fail(requests, translate_ray_error(exc, self.name, "handle"))
            return None
        replica.in_flight += 1
        if watch:
            on_completed(ref, partial(replies.on_result, replica, requests, ref))
        return ref
