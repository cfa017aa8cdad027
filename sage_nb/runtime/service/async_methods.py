"""``AsyncMethods``: where a thread-served service's ``async def`` methods run.

A worker that takes a request for an ``async def`` method does not wait for it: it schedules
the coroutine on one asyncio loop per service (``sage_nb/service-loop/<name>``) and takes the
next request, so many such calls are in flight at once. The loop answers each request and
counts its outcome (only that thread writes ``stats``); an outcome is taken back when the
caller had already given up, which it counted itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..messages import RemoteError, ServiceRequest, ServiceResponse
from ..threads import LoopThread

if TYPE_CHECKING:
    from .context import ServiceContext

__all__ = ["AsyncMethods"]


class _Task(Protocol):
    name: str
    context: ServiceContext

    def deliver_error(self, request: ServiceRequest, exc: BaseException) -> bool: ...


class AsyncMethods(LoopThread):
    """The loop of one service's ``async def`` methods, with its share of the statistics."""

    def __init__(self, task: _Task, stats: Any) -> None:
        self.task = task
        self.active = 0  # coroutines running; written only by the loop thread
        self.stats = stats  # likewise: a worker's counters (done, failed, rejected, latency)
        super().__init__(f"sage_nb/service-loop/{task.name}")

    def schedule(self, fn: Callable[..., Any], request: ServiceRequest, start: float) -> None:
        """Run ``fn(*request.args, **request.kwargs)`` on the loop; answer ``request``."""
        coro = self._answer(fn, request, start)
        if request.context is None:
            asyncio.run_coroutine_threadsafe(coro, self.loop)
        else:  # a task copies the context it is created in: create it in the caller's
            ctx, loop = request.context, self.loop
            loop.call_soon_threadsafe(ctx.run, loop.create_task, coro)

    async def _answer(self, fn: Callable[..., Any], request: ServiceRequest, start: float) -> None:
        stats = self.stats
        task = self.task
        self.active += 1
        try:
            result = await fn(*request.args, **request.kwargs)
        except asyncio.CancelledError:
            if task.deliver_error(request, task.context.unavailable("it was stopped")):
                stats.rejected += 1
            return
        except BaseException as exc:
            elapsed = time.monotonic() - start
            response = ServiceResponse(
                request.request_id, False, None, RemoteError.from_exception(exc), elapsed
            )
            stats.failed += 1
        else:
            elapsed = time.monotonic() - start
            response = ServiceResponse(request.request_id, True, result, None, elapsed)
            stats.done += 1
        finally:
            self.active -= 1
        if not request.response_target.deliver(response):  # type: ignore[union-attr]
            if response.success:
                stats.done -= 1
            else:
                stats.failed -= 1
        task.context.recent.append((request, response))
        stats.latency.add(elapsed)
