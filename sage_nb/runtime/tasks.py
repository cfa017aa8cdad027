"""Operator tasks: one thread per parallel instance of a region (operators chained together).

::

    source task ──(port, batch)──▶ Channel ──▶ task ──(port, batch)──▶ Channel ──▶ task …
       │ reads a batch from the source            │ ports[port](batch): the chained loops
       └ ports[0](batch): the chained loops        └ outputs go to the next tasks' channels

A source task sizes its batches to take a few milliseconds each (up to ``max_batch`` records),
so fast pipelines move thousands of records per hand-off while a slow one (a record per service
call of 10 ms) still reports progress and notices ``job.stop()`` promptly. End of stream travels
as ``(port, None)``; a stopping job closes every channel, which wakes every task at once.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core.functions import BaseFunction, StopSignal
from ..errors import JobCancelledError, OperatorError
from .chain import ChainProgram
from .channel import CLOSED, Channel, ChannelClosed
from .threads import make_thread

if TYPE_CHECKING:
    from .chain import KeyCursor
    from .graph import OperatorNode, Region
    from .job_manager import Job
    from .transit import Transit

__all__ = ["QUIET", "OperatorContext", "OperatorTask", "close_function", "open_function"]

log = logging.getLogger(__name__)

#: A source batch should take about this long to read and process.
TARGET_BATCH_SECONDS = 0.005

#: Sent to the tasks a feedback loop feeds when nothing is in transit (see ``transit.py``).
QUIET_BATCH: Any = object()
QUIET = (-1, QUIET_BATCH)


class OperatorContext:
    """What a function sees as ``self.ctx``: which operator instance it is, and its proxy.

    ``name`` is the operator's label (``map(Enrich)``), ``parallel_index`` (also ``index``) and
    ``parallelism`` say which parallel instance this is, ``function_name`` is SAGE's name of the
    instance (``<operator name>_<parallel index>``), and on a keyed stream ``get_key()`` returns
    the key of the record being processed.
    """

    def __init__(
        self,
        name: str,
        index: int,
        parallelism: int,
        job: Any,
        proxy: Any,
        *,
        operator_name: str | None = None,
        key_cursor: KeyCursor | None = None,
    ) -> None:
        self.name = name
        self.index = index
        self.parallelism = parallelism
        self.job = job
        self.proxy = proxy
        self.function_name = f"{operator_name or name}_{index}"
        self._key_cursor = key_cursor

    @property
    def parallel_index(self) -> int:
        return self.index

    def get_key(self) -> Any:
        """The key of the record being processed (on a stream after ``keyby``), else None."""
        cursor = self._key_cursor
        return None if cursor is None else cursor.key()

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger(f"sage_nb.function.{self.function_name}")

    def __repr__(self) -> str:
        return f"<OperatorContext {self.name}[{self.index}/{self.parallelism}] of {self.job.name}>"


def open_function(
    fn: Any, node: OperatorNode, index: int, job: Any, proxy: Any, cursor: Any
) -> None:
    """Give ``fn`` (one parallel instance of ``node``) its context, then run its ``setup()``
    (``setup(context)`` if it takes an argument); a failure raises ``OperatorError``."""
    ctx = OperatorContext(
        node.label,
        index,
        node.parallelism,
        job,
        proxy,
        operator_name=node.name,
        key_cursor=cursor,
    )
    try:
        fn.ctx = ctx
        if isinstance(fn, BaseFunction) or not hasattr(type(fn), "call_service"):
            fn.call_service = proxy.call_service
            fn.call_service_async = proxy.call_service_async
    except (AttributeError, TypeError):
        log.debug("could not give %r a context", fn)
    setup = getattr(fn, "setup", None)
    if callable(setup):
        try:
            if _wants_argument(setup):
                setup(ctx)
            else:
                setup()
        except Exception as exc:
            no = OperatorError.NO_RECORD
            raise OperatorError(node.label, no, exc, phase="setup()") from exc


def close_function(label: str, fn: Any) -> None:
    """Run ``fn.close()`` if it has one; a failure raises ``OperatorError``."""
    close = getattr(fn, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:
            no = OperatorError.NO_RECORD
            raise OperatorError(label, no, exc, phase="close()") from exc


def _wants_argument(method: Any) -> bool:
    """Whether ``method`` needs a positional argument (SAGE's ``setup(self, context)``)."""
    try:
        inspect.signature(method).bind()
    except TypeError:
        return True
    except ValueError:  # no signature (a builtin): call it as it is
        return False
    return False


class OperatorTask:
    """One parallel instance of a region, on its own daemon thread."""

    def __init__(self, job: Job, region: Region, index: int, channel_capacity: int) -> None:
        self.job = job
        self.region = region
        self.index = index
        self.channel: Channel | None = None if region.is_source else Channel(channel_capacity)
        self.functions: dict[int, Any] = {}
        for node in region.nodes:
            if node.factory is not None:
                self.functions[node.id] = node.factory.create(index)
        self.program = ChainProgram(region, index, self.functions, job.dead_letters.append)
        #: Filled by the job once every task exists: targets of each remote output edge.
        self.targets: list[list[OperatorTask]] = []
        self._round_robin = [itertools.count(index) for _ in self.program.out_edges]
        suffix = f"#{index}" if index else ""
        self.thread = make_thread(f"sage_nb/task/{region.label}{suffix}", self._run)

    def start(self) -> None:
        self.thread.start()

    def abort(self) -> None:
        """Wake the task if it waits for input: the job is stopping."""
        if self.channel is not None:
            self.channel.close()

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        job = self.job
        opened: list[tuple[str, Any]] = []
        try:
            self._open(opened)
            if self.region.is_source:
                self._run_source()
            else:
                self._run_inputs()
            if not job.stopping:
                self._close_functions(opened)
                self._send_end()
        except (JobCancelledError, ChannelClosed):
            if not job.stopping:  # pragma: no cover - only a stopping job cancels
                job.task_failed(RuntimeError(f"task {self.thread.name} cancelled unexpectedly"))
        except BaseException as exc:
            job.task_failed(exc)
        finally:
            if opened:  # stopped or failed: still give every function its close()
                try:
                    self._close_functions(opened)
                except BaseException as exc:
                    log.warning("%s: close() failed after the job ended: %s", self, exc)
            job.task_finished(self)

    def _open(self, opened: list[tuple[str, Any]]) -> None:
        """Give each function its context and run its ``setup()``; ``opened`` collects those
        that need a ``close()``."""
        job = self.job
        cursors = self.program.key_cursors
        for node in self.region.nodes:
            fn = self.functions.get(node.id)
            if fn is None or inspect.isroutine(fn):
                continue
            open_function(fn, node, self.index, job, job.proxy_for(node), cursors.get(node.id))
            opened.append((node.label, fn))

    @staticmethod
    def _close_functions(opened: list[tuple[str, Any]]) -> None:
        while opened:
            label, fn = opened.pop(0)
            close_function(label, fn)

    def _run_source(self) -> None:
        job = self.job
        head = self.region.head
        run = self.program.ports[0]
        account = self.program.account
        send = self._send
        monotonic = time.monotonic
        t = head.transformation
        try:
            reader = _SourceReader(self.functions.get(head.id, t.source), t.streaming)
        except Exception as exc:
            no = OperatorError.NO_RECORD
            raise OperatorError(head.label, no, exc, phase="opening the source") from exc
        head.total = reader.total
        transit = job.transit
        if t.delay or transit is not None:
            self._run_paced(reader, t.delay, transit)
            return
        # Batches only bound how much crosses a queue at once; a job that is one chained task
        # moves nothing between tasks, so only the time target limits its batches.
        limit = job.max_batch if self.program.out_edges else job.max_batch * 16
        size = 64
        idle = IdleBackoff(job.stop_event)
        while not job.stopping:
            start = monotonic()
            batch = self._read(reader, size, start)
            if batch:
                idle.reset()
                outputs, counts = run(batch)
                account(len(batch), counts)
                if outputs:
                    send(outputs)
            if reader.exhausted:
                return
            if not batch:  # the source had nothing (it returned None): wait a little
                idle.wait()
                continue
            took = monotonic() - start
            if took < TARGET_BATCH_SECONDS / 2:
                size = min(size * 2, limit)
            elif took > TARGET_BATCH_SECONDS * 4 and size > 1:
                size //= 2

    def _run_paced(self, reader: _SourceReader, delay: float, transit: Transit | None) -> None:
        """Read one record at a time: wait ``delay`` seconds between reads (SAGE paces its
        sources) and, record at a time, until the record has gone through the whole graph."""
        job = self.job
        run = self.program.ports[0]
        stop = job.stop_event
        idle = IdleBackoff(stop)
        while not job.stopping:
            batch = self._read(reader, 1, time.monotonic())
            if not batch and not delay and not reader.exhausted:
                idle.wait()
                continue
            if batch:
                idle.reset()
                outputs, counts = run(batch)
                self.program.account(1, counts)
                if outputs:
                    self._send(outputs)
                if transit is not None and not transit.wait_quiet():
                    return
            if reader.exhausted or (delay and stop.wait(delay)):
                return

    def _read(self, reader: _SourceReader, size: int, start: float) -> list[Any]:
        try:
            return reader.read(size, start)
        except Exception as exc:
            no = OperatorError.NO_RECORD
            raise OperatorError(self.region.head.label, no, exc, phase="reading") from exc

    def _run_inputs(self) -> None:
        job = self.job
        assert self.channel is not None
        get = self.channel.get
        ports = self.program.ports
        account = self.program.account
        send = self._send
        inputs = self.region.remote_inputs
        open_inputs = sum(e.upstream.parallelism for e in inputs if not e.feedback)
        looped = any(e.feedback for e in inputs)
        transit = job.transit
        while open_inputs or looped:
            message = get()
            if message is CLOSED:
                return
            port, batch = message
            if batch is None or batch is QUIET_BATCH:  # an input ended, or the graph is quiet
                if batch is None and not inputs[port].feedback:
                    open_inputs -= 1
                if looped and not open_inputs and transit is not None and not transit.pending:
                    return  # drained, and the loop has died out
                continue
            outputs, counts = ports[port](batch)
            account(len(batch), counts)
            if outputs:
                send(outputs)
            if transit is not None:
                transit.done()
            if job.stopping:
                return

    def _send(self, outputs: tuple[Any, ...]) -> None:
        transit = self.job.transit
        for i, out in enumerate(outputs):
            edge = self.program.out_edges[i]
            targets = self.targets[i]
            partitioning = edge.partitioning
            if partitioning == "keyed":
                puts = [(target, part) for target, part in zip(targets, out) if part]
            elif not out:
                continue
            elif partitioning == "broadcast":  # every instance gets the batch (none mutates it)
                puts = [(target, out) for target in targets]
            else:
                puts = [(targets[next(self._round_robin[i]) % len(targets)], out)]
            if transit is not None:  # counted before they are put: see transit.py
                transit.sent(len(puts))
            sent = 0
            port = edge.port
            for target, part in puts:
                assert target.channel is not None
                target.channel.put((port, part))
                sent += len(part)
            edge.records[0] += sent

    def _send_end(self) -> None:
        for i, edge in enumerate(self.program.out_edges):
            for target in self.targets[i]:
                assert target.channel is not None
                target.channel.put((edge.port, None))

    def __repr__(self) -> str:
        return f"<OperatorTask {self.thread.name}>"


class _SourceReader:
    """Reads batches from what ``from_batch`` / ``from_source`` was given.

    A sequence is sliced, an iterable is consumed with ``islice``, a ``BatchFunction`` is called
    until it returns None, a ``SourceFunction`` (or a callable) until it returns ``StopSignal``
    or raises ``StopIteration``. Per-record sources stop a batch early after a few milliseconds,
    so a source that blocks between records still delivers what it has.
    """

    def __init__(self, spec: Any, streaming: bool) -> None:
        self.exhausted = False
        self.total: int | None = None
        self._seq: Any = None
        self._pos = 0
        self._iter: Iterator[Any] | None = None
        self._call: Any = None
        self._stop_on_none = False
        execute = getattr(spec, "execute", None)
        if callable(execute):
            self._call = execute
            self._stop_on_none = not streaming
            self.total = _length(spec)
        elif isinstance(spec, (list, tuple, range)):
            self._seq = spec
            self.total = len(spec)
        elif callable(spec) and not hasattr(spec, "__iter__"):
            self._call = spec
        else:
            self.total = _length(spec)
            self._iter = iter(spec)

    def read(self, size: int, start: float) -> list[Any]:
        if self._seq is not None:
            batch = self._seq[self._pos : self._pos + size]
            self._pos += size
            if self._pos >= len(self._seq):
                self.exhausted = True
            return batch if isinstance(batch, list) else list(batch)
        if self._iter is not None:
            batch = list(itertools.islice(self._iter, size))
            if len(batch) < size:
                self.exhausted = True
            return batch
        return self._read_calls(size, start)

    def _read_calls(self, size: int, start: float) -> list[Any]:
        call = self._call
        batch: list[Any] = []
        deadline = start + TARGET_BATCH_SECONDS
        monotonic = time.monotonic
        for _ in range(size):
            try:
                record = call()
            except StopIteration:
                self.exhausted = True
                break
            if record is StopSignal or isinstance(record, StopSignal):
                self.exhausted = True
                break
            if record is None:
                if self._stop_on_none:
                    self.exhausted = True
                # Nothing now: deliver what was read; an empty read makes the task back off
                # (IdleBackoff) instead of spinning a core on a source that does not block.
                break
            batch.append(record)
            if monotonic() > deadline:
                break
        return batch


class IdleBackoff:
    """How a source task waits when its source had nothing: 1 ms, doubling up to 50 ms, on
    the job's stop event (a stop ends the wait at once); a record resets it."""

    FIRST = 0.001
    LONGEST = 0.05

    __slots__ = ("_next", "_stop")

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._next = self.FIRST

    def wait(self) -> bool:
        """Wait the next backoff; True if the job is stopping."""
        wait, self._next = self._next, min(self._next * 2, self.LONGEST)
        return self._stop.wait(wait)

    def reset(self) -> None:
        self._next = self.FIRST


def _length(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None
