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
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core.functions import BaseFunction, StopSignal
from ..errors import JobCancelledError, OperatorError
from .chain import ChainProgram
from .channel import CLOSED, Channel, ChannelClosed
from .threads import make_thread

if TYPE_CHECKING:
    from .graph import Region
    from .job_manager import Job

__all__ = ["OperatorContext", "OperatorTask"]

log = logging.getLogger(__name__)

#: A source batch should take about this long to read and process.
TARGET_BATCH_SECONDS = 0.005


class OperatorContext:
    """What a function sees as ``self.ctx``: which operator instance it is, and its proxy."""

    def __init__(self, name: str, index: int, parallelism: int, job: Job, proxy: Any) -> None:
        self.name = name
        self.index = index
        self.parallelism = parallelism
        self.job = job
        self.proxy = proxy

    def __repr__(self) -> str:
        return f"<OperatorContext {self.name}[{self.index}/{self.parallelism}] of {self.job.name}>"


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
        for node in self.region.nodes:
            fn = self.functions.get(node.id)
            if fn is None or inspect.isroutine(fn):
                continue
            proxy = job.proxy_for(node)
            ctx = OperatorContext(node.label, self.index, node.parallelism, job, proxy)
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
                    setup()
                except Exception as exc:
                    no = OperatorError.NO_RECORD
                    raise OperatorError(node.label, no, exc, phase="setup()") from exc
            opened.append((node.label, fn))

    @staticmethod
    def _close_functions(opened: list[tuple[str, Any]]) -> None:
        while opened:
            label, fn = opened.pop(0)
            close = getattr(fn, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    no = OperatorError.NO_RECORD
                    raise OperatorError(label, no, exc, phase="close()") from exc

    def _run_source(self) -> None:
        job = self.job
        head = self.region.head
        run = self.program.ports[0]
        account = self.program.account
        send = self._send
        monotonic = time.monotonic
        try:
            reader = _SourceReader(head.transformation.source, head.transformation.streaming)
        except Exception as exc:
            no = OperatorError.NO_RECORD
            raise OperatorError(head.label, no, exc, phase="opening the source") from exc
        head.total = reader.total
        # Batches only bound how much crosses a queue at once; a job that is one chained task
        # moves nothing between tasks, so only the time target limits its batches.
        limit = job.max_batch if self.program.out_edges else job.max_batch * 16
        size = 64
        while not job.stopping:
            start = monotonic()
            try:
                batch = reader.read(size, start)
            except Exception as exc:
                no = OperatorError.NO_RECORD
                raise OperatorError(head.label, no, exc, phase="reading") from exc
            if batch:
                outputs, counts = run(batch)
                account(len(batch), counts)
                if outputs:
                    send(outputs)
            if reader.exhausted:
                return
            took = monotonic() - start
            if took < TARGET_BATCH_SECONDS / 2:
                size = min(size * 2, limit)
            elif took > TARGET_BATCH_SECONDS * 4 and size > 1:
                size //= 2

    def _run_inputs(self) -> None:
        job = self.job
        assert self.channel is not None
        get = self.channel.get
        ports = self.program.ports
        account = self.program.account
        send = self._send
        open_inputs = sum(e.upstream.parallelism for e in self.region.remote_inputs)
        while open_inputs:
            message = get()
            if message is CLOSED:
                return
            port, batch = message
            if batch is None:
                open_inputs -= 1
                continue
            outputs, counts = ports[port](batch)
            account(len(batch), counts)
            if outputs:
                send(outputs)
            if job.stopping:
                return

    def _send(self, outputs: tuple[Any, ...]) -> None:
        for i, out in enumerate(outputs):
            edge = self.program.out_edges[i]
            targets = self.targets[i]
            port = edge.port
            if edge.partitioning == "keyed":
                sent = 0
                for target, part in zip(targets, out):
                    if part:
                        assert target.channel is not None
                        target.channel.put((port, part))
                        sent += len(part)
            elif out:
                target = targets[next(self._round_robin[i]) % len(targets)]
                assert target.channel is not None
                target.channel.put((port, out))
                sent = len(out)
            else:
                continue
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
        if inspect.isclass(spec):
            spec = spec()
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
                    break
                if monotonic() > deadline:
                    break  # an idle source: deliver what it read, let the task see a stop
                continue
            batch.append(record)
            if monotonic() > deadline:
                break
        return batch


def _length(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None
