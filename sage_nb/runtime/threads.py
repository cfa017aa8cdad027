"""How the runtime makes threads: daemons named ``sage_nb/<kind>/<name>``, started in a copy of
their creator's ``contextvars`` context.

Inheriting the context is what routes output in a notebook: ipykernel keeps the header of the
cell being executed in a context variable, so a task thread started by ``%sage_submit`` prints
under that cell, even after later cells ran. (Python 3.14 does this for every thread; earlier
versions start threads with an empty context.)
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["LoopThread", "make_thread"]


def make_thread(name: str, target: Callable[..., Any], *args: Any) -> threading.Thread:
    """A daemon thread named ``name`` that runs ``target(*args)`` in a copy of this context."""
    if not name.startswith("sage_nb/"):
        raise ValueError(f"runtime threads are named sage_nb/<kind>/<name>, got {name!r}")
    context = contextvars.copy_context()
    return threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)


class LoopThread:
    """An asyncio event loop running on its own daemon thread (where a service's ``async def``
    methods run): submit coroutines with ``asyncio.run_coroutine_threadsafe(coro, .loop)``."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = make_thread(name, self._run)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def stop(self, timeout: float | None) -> bool:
        """Cancel the coroutines still running, let their callers' futures settle, stop the
        loop and wait up to ``timeout`` for the thread; close the loop once it ended. True if
        it did (a coroutine that ignores its cancellation keeps the loop running)."""

        async def cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not me]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)  # run_coroutine_threadsafe's futures settle too
            self.loop.stop()

        if self.thread.is_alive():
            # Also before run_forever() began: the loop runs this first when it starts.
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop)
            self.thread.join(timeout)
            if self.thread.is_alive():
                return False
        if not self.loop.is_closed():
            self.loop.close()
        return True
