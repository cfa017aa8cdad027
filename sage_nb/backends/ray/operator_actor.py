"""``OperatorActor``: one parallel instance of a pipeline region, inside a Ray actor.

::

    RemoteOperatorTask (driver thread) ──process.remote(port, batch)──▶ OperatorActor
                                       ◀── ("ok", outputs, counts, errors, letters, calls) ──┘

The functions are created in the actor (class, instance or callable, as with threads), get a
context whose proxy calls service actors directly (``ActorProxy``), and run the same compiled
``ChainProgram`` as a thread would. Each batch returns the outputs of every remote edge (keyed
ones already partitioned, by ``partition_hash``), the filter/flatmap counters, and what the
driver's copies of the node statistics need: errors counted, dead letters and services called.
``cancel`` runs in its own concurrency group, so a stopping job reaches an actor busy with a
batch: its functions' next service calls raise ``JobCancelledError``.
"""

from __future__ import annotations

import inspect
import threading
from types import SimpleNamespace
from typing import Any

import ray

from ...errors import OperatorError
from ...runtime.chain import ChainProgram
from ...runtime.dead_letters import DeadLetter
from ...runtime.graph import Region
from ...runtime.tasks import close_function, open_function
from .actor_proxy import ActorProxy
from .options import ActorConfig
from .partition import install_partition_hash
from .wire import dumps

__all__ = ["OperatorActor"]


class OperatorActor:
    """Hosts the functions and the compiled chain of one region instance."""

    def __init__(self, region: Region, index: int, config: ActorConfig, job_name: str) -> None:
        self.region = region
        self.index = index
        self.config = config
        self._stop_event = threading.Event()
        self._job = SimpleNamespace(name=job_name, stopping=False)
        self._letters: list[DeadLetter] = []
        self._calls: dict[int, set[str]] = {}
        self._opened: list[tuple[str, Any]] = []
        self.functions: dict[int, Any] = {
            n.id: n.factory.create(index) for n in region.nodes if n.factory is not None
        }
        self.program = ChainProgram(region, index, self.functions, self._letters.append)
        install_partition_hash(self.program)

    def _cancelled(self) -> bool:
        return bool(self._job.stopping)

    def open(self) -> BaseException | None:
        """Give each function its context and run its ``setup()``; the failure, or None."""
        for node in self.region.nodes:
            fn = self.functions.get(node.id)
            if fn is None or inspect.isroutine(fn):
                continue
            called = self._calls.setdefault(node.id, set())
            proxy = ActorProxy(
                self.config,
                owner=node.label,
                cancelled=self._cancelled,
                stop_event=self._stop_event,
                on_resolve=called.add,
            )
            try:
                cursor = self.program.key_cursors.get(node.id)
                open_function(fn, node, self.index, self._job, proxy, cursor)
            except OperatorError as exc:
                return portable(exc)
            self._opened.append((node.label, fn))
        return None

    def process(self, port: int, batch: list[Any]) -> tuple[Any, ...]:
        """Run one batch through the chain (see the module docstring)."""
        try:
            outputs, counts = self.program.ports[port](batch)
        except BaseException as exc:
            return ("fail", portable(exc))
        errors: list[tuple[int, int]] = []
        for node in self.region.nodes:  # the driver accounts them with the batch
            counters = node.counters[self.index]
            if counters.errors_pending:
                errors.append((node.id, counters.errors_pending))
                counters.errors_pending = 0
        letters: list[DeadLetter] = []
        if self._letters:
            letters = [_portable_letter(letter) for letter in self._letters]
            self._letters.clear()
        calls: list[tuple[int, list[str]]] = []
        for node_id, names in self._calls.items():
            if names:
                calls.append((node_id, sorted(names)))
                names.clear()
        return ("ok", outputs, counts, errors, letters, calls)

    def finish(self) -> BaseException | None:
        """Run every function's ``close()``; the first failure, or None."""
        while self._opened:
            label, fn = self._opened.pop(0)
            try:
                close_function(label, fn)
            except OperatorError as exc:
                return portable(exc)
        return None

    @ray.method(concurrency_group="control")  # type: ignore[misc]
    def cancel(self) -> None:
        """The job is stopping: later service calls raise ``JobCancelledError``."""
        self._job.stopping = True
        self._stop_event.set()


def portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a copy that keeps its text."""
    try:
        dumps(exc)
        return exc
    except Exception:
        pass
    cause = exc.__cause__
    text = RuntimeError(f"{type(cause).__name__}: {cause}") if cause is not None else None
    if isinstance(exc, OperatorError):
        from ...errors import rebuild_operator_error

        record = exc.record
        try:
            dumps(record)
        except Exception:
            record = repr(record)
        return rebuild_operator_error(exc.operator, record, str(exc), text)
    return RuntimeError(f"{type(exc).__name__}: {exc}")


def _portable_letter(letter: DeadLetter) -> DeadLetter:
    try:
        dumps(letter)
        return letter
    except Exception:
        pass
    record = letter.record
    try:
        dumps(record)
    except Exception:
        record = repr(record)
    error = letter.error
    try:
        dumps(error)
    except Exception:
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return DeadLetter(letter.operator, record, error)
