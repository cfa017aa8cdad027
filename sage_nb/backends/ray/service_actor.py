"""``ServiceActor``: the Ray actor that hosts one replica of a service.

::

    RayServiceTask (driver) ──handle.remote(frame)──▶ ServiceActor.handle  (max_concurrency
    ActorProxy (other actors) ─────────────────────▶                        Ray threads)
                                                    │ per request: deadline passed? → EXPIRED
                                                    │ method = version.methods[...]; run it
                                                    │ async def → sage_nb/service-loop/<name>
                                                    └─▶ pack_reply(pid, version, entries)

The service is built in the actor (its ``setup()`` runs there) with an ``ActorProxy``, so it
can call other services. A swap builds the new version first; requests already running finish
on the old one, whose ``close()`` runs when none is left. Ray re-runs ``__init__`` with the
original arguments after a crash, so each reply names the version that answered and the driver
swaps a restarted replica forward.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import Any

from ...runtime.service.base_service_task import ServiceVersion
from ...runtime.service.service_factory import ServiceFactory
from ...runtime.threads import LoopThread
from .actor_proxy import ActorProxy
from .options import ActorConfig
from .wire import (
    ERROR,
    EXPIRED,
    Entry,
    encode_error,
    encode_result,
    loads,
    pack_reply,
    unpack_batch,
)

__all__ = ["ServiceActor"]

log = logging.getLogger(__name__)


class ServiceActor:
    """One replica of a service, inside a Ray actor (see the module docstring)."""

    def __init__(self, factory: ServiceFactory, config: ActorConfig, replica: int, number: int):
        self.name = factory.name
        self.replica = replica
        self._proxy = ActorProxy(config, owner=f"service {factory.name}")
        # Invariants: _version and _busy change under _cond; _busy counts the handle() calls
        # running each version number, so a swap closes the old version once its count is 0.
        self._cond = threading.Condition()
        self._busy: dict[int, int] = {}
        self._version = ServiceVersion(factory, self._build(factory), number)
        self._loop: LoopThread | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        # Ray starts this actor's log lines (and names it in the dashboard) with its repr.
        return f"ServiceActor({self.name!r}, replica={self.replica})"

    def _build(self, factory: ServiceFactory) -> Any:
        # ActorProxy offers ProxyManager's call API, which is all a service is given.
        return factory.create_service(self._proxy)  # type: ignore[arg-type]

    def ready(self) -> tuple[int, int]:
        """(process id, version number): answers once the service is built."""
        return self._pid, self._version.number

    # -- requests --------------------------------------------------------------------------
    def handle(self, frame: bytes, *large: bytes) -> Any:
        """Run a batch of requests in order; return the reply (see ``wire``)."""
        batch = unpack_batch(frame, large)
        with self._cond:
            version = self._version
            self._busy[version.number] = self._busy.get(version.number, 0) + 1
        try:
            out: list[Any] = []
            waits: list[tuple[int, Future[Entry]]] = []
            name = self.name
            monotonic = time.monotonic
            for rid, deadline, payload in batch:
                if deadline is not None and time.time() > deadline:
                    out.append((rid, EXPIRED, None, 0.0))
                    continue
                start = monotonic()
                method = "?"
                try:
                    method, args, kwargs = loads(payload)
                    fn, is_async = version.methods.get(method) or version.resolve(name, method)
                    if is_async:
                        waits.append((len(out), self._schedule(fn, rid, method, args, kwargs)))
                        out.append(None)
                        continue
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    out.append((rid, ERROR, encode_error(exc), monotonic() - start))
                    continue
                out.append(encode_result(rid, name, method, result, monotonic() - start))
            for i, future in waits:
                out[i] = future.result()
            return pack_reply(self._pid, version.number, out)
        finally:
            with self._cond:
                self._busy[version.number] -= 1
                if version is not self._version:
                    self._cond.notify_all()

    def _schedule(
        self, fn: Any, rid: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Entry]:
        runner = self._loop
        if runner is None:
            with self._cond:
                runner = self._loop = self._loop or LoopThread(f"sage_nb/service-loop/{self.name}")
        return asyncio.run_coroutine_threadsafe(
            _run_async(fn, rid, self.name, method, args, kwargs), runner.loop
        )

    # -- lifecycle -------------------------------------------------------------------------
    def swap(self, factory: ServiceFactory, number: int, timeout: float = 30.0) -> int:
        """Build version ``number`` from ``factory`` and serve it; close the old one when the
        calls running it are done. Raises (keeping the old version) if building fails."""
        new = ServiceVersion(factory, self._build(factory), number)
        with self._cond:
            old, self._version = self._version, new
            self._cond.wait_for(lambda: not self._busy.get(old.number), timeout)
        old.close()
        return number

    def close(self) -> str | None:
        """Run the service's ``close()``; return its error as text, or None."""
        try:
            self._version.close()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            if self._loop is not None:
                self._loop.stop(2.0)
        return None


async def _run_async(
    fn: Any, rid: int, service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Entry:
    start = time.monotonic()
    try:
        result = await fn(*args, **kwargs)
    except BaseException as exc:
        return (rid, ERROR, encode_error(exc), time.monotonic() - start)
    return encode_result(rid, service, method, result, time.monotonic() - start)
