"""``DataStream``: the fluent API that records a pipeline as ``Transformation`` nodes.

Nothing runs here. ``env.submit()`` compiles the transformations into an ``ExecutionGraph``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.functions import CoMapFunction, FunctionFactory, SinkFunction, describe
from ..core.transformation import Transformation

if TYPE_CHECKING:
    from .pipeline import PipelineBuilder

__all__ = ["ConnectedStreams", "DataStream"]


class DataStream:
    """A stream of records in a pipeline; each method adds an operator and returns the result.

    Examples
    --------
    >>> from sage_nb import LocalEnvironment
    >>> out = []
    >>> with LocalEnvironment("doc") as env:
    ...     stream = env.from_batch(range(5)).map(lambda x: x * 10)
    ...     _ = stream.filter(lambda x: x > 10).sink(out.append)
    ...     job = env.submit()
    >>> out
    [20, 30, 40]
    """

    def __init__(self, env: PipelineBuilder, transformation: Transformation) -> None:
        self._env = env
        self.transformation = transformation

    def _then(
        self,
        kind: str,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parallelism: int | None,
        name: str | None,
        on_error: Any = None,
    ) -> DataStream:
        semantics = self._env.semantics
        t = self.transformation
        factory = FunctionFactory(kind, fn, args, kwargs)
        node = Transformation(
            kind,
            factory,
            [t],
            parallelism=1 if parallelism is None else parallelism,
            name=name,
            input_keys=[t.key],
            on_error=semantics.on_error if on_error is None else on_error,
            drop_none=semantics.drop_none and kind == "map",
        )
        return self._env._add(node)

    def map(
        self,
        fn: Any,
        *args: Any,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = None,
        **kwargs: Any,
    ) -> DataStream:
        """Apply ``fn`` to every record (a ``MapFunction`` or any callable ``record -> result``).

        Arguments after ``fn`` go to its constructor: ``map(Lookup, table, limit=3)`` builds
        ``Lookup(table, limit=3)`` for each parallel instance when the job is submitted, with
        the very objects given. ``parallelism`` runs that many instances; ``name`` names the
        operator; ``on_error`` says what a record that makes ``fn`` raise does: ``"fail"`` the
        job (the default), ``"skip"`` it (counted in the operator's errors), ``"log"`` it with
        its traceback and go on, ``"dead_letter"`` (kept in ``job.dead_letters``), or a callable
        that receives each ``DeadLetter``. ``filter``, ``flatmap`` and ``sink`` take the same.
        """
        return self._then("map", fn, args, kwargs, parallelism, name, on_error)

    def filter(
        self,
        fn: Any,
        *args: Any,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = None,
        **kwargs: Any,
    ) -> DataStream:
        """Keep records for which ``fn(record)`` is true."""
        return self._then("filter", fn, args, kwargs, parallelism, name, on_error)

    def flatmap(
        self,
        fn: Any,
        *args: Any,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = None,
        **kwargs: Any,
    ) -> DataStream:
        """Replace each record with the records of the iterable ``fn(record)`` returns."""
        return self._then("flatmap", fn, args, kwargs, parallelism, name, on_error)

    def keyby(
        self,
        fn: Any,
        *args: Any,
        strategy: str = "hash",
        parallelism: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> DataStream:
        """Partition by ``fn(record)``: records pass unchanged to the next operator.

        ``strategy="hash"`` (the default) sends every record with one key to the same instance
        of the next operator; ``"broadcast"`` sends every record to every instance;
        ``"round_robin"`` spreads them evenly. Either way the next operator's functions see the
        record's key as ``self.ctx.get_key()``. Arguments after ``fn`` go to its constructor.
        ``parallelism`` is accepted for SAGE's programs and ignored: a keyby is not an operator
        of its own, the next operator's parallelism decides.
        """
        t = self.transformation
        key = FunctionFactory("keyby", fn, args, kwargs)
        node = Transformation(
            "keyby",
            None,
            [t],
            parallelism=t.parallelism,
            name=name or key.name,
            key=key,
            input_keys=[t.key],
            strategy=strategy,
        )
        return self._env._add(node)

    def sink(
        self,
        fn: Any,
        *args: Any,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = None,
        **kwargs: Any,
    ) -> DataStream:
        """Consume every record with ``fn(record)``: a ``SinkFunction``, ``print``,
        ``list.append``...

        Returns the stream it was called on, so ``s.sink(a).sink(b)`` gives both sinks every
        record (as in SAGE).
        """
        self._then("sink", fn, args, kwargs, parallelism, name, on_error)
        return self

    def print(self, prefix: str = "", *, name: str | None = None) -> DataStream:
        """Print every record, after ``prefix`` if one is given.

        In ``sage_nb.compat`` (SAGE's semantics) only the first record is printed, as
        ``🔍 Stream output: {prefix} | {record}``, followed by a notice that the rest goes to
        the log at DEBUG level.
        """
        if self._env.semantics.print_first_only:
            return self.sink(_FirstRecordPrinter(prefix), name=name or "print")
        if prefix:

            def show(record: Any) -> None:
                builtins.print(prefix, record)

            show.__name__ = "print"
            return self.sink(show, name=name)
        return self.sink(builtins.print, name=name)

    def connect(self, other: DataStream | ConnectedStreams) -> ConnectedStreams:
        """Combine with ``other`` for ``comap`` (one function per stream) or a keyed ``join``."""
        streams = other.streams if isinstance(other, ConnectedStreams) else [other]
        return ConnectedStreams(self._env, [self, *streams])

    def __repr__(self) -> str:
        return f"<DataStream after {self.transformation.label}>"


class _FirstRecordPrinter(SinkFunction):
    """SAGE's ``.print``: the first record on stdout, the others in the log (DEBUG)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._printed = False

    def execute(self, data: Any) -> None:
        if not self._printed:
            self._printed = True
            builtins.print(f"\U0001f50d Stream output: {self.prefix} | {data}")
            builtins.print(
                f"(only the first record is printed; the rest goes to the log of "
                f"{self.logger.name!r} at DEBUG level)"
            )
        else:
            self.logger.debug("%s | %r", self.prefix, data)


class _CallablesCoMap(CoMapFunction):
    """``comap(f0, f1, ...)`` with plain callables: ``mapN`` calls the N-th."""

    def __init__(self, fns: tuple[Callable[[Any], Any], ...]) -> None:
        self._fns = fns
        for i, fn in enumerate(fns):
            setattr(self, f"map{i}", fn)


class ConnectedStreams:
    """Two or more streams combined for ``comap`` or ``join``."""

    def __init__(self, env: PipelineBuilder, streams: list[DataStream]) -> None:
        self._env = env
        self.streams = streams

    def connect(self, other: DataStream) -> ConnectedStreams:
        return ConnectedStreams(self._env, [*self.streams, other])

    def _node(self, kind: str, factory: FunctionFactory, parallelism: int, name: str | None):
        inputs = [s.transformation for s in self.streams]
        return Transformation(
            kind,
            factory,
            inputs,
            parallelism=parallelism,
            name=name,
            input_keys=[t.key for t in inputs],
        )

    def comap(
        self, *fns: Any, parallelism: int | None = None, name: str | None = None
    ) -> DataStream:
        """Map each stream with its own function: a ``CoMapFunction`` (``map0``, ``map1``, …)
        or one plain callable per stream."""
        n = len(self.streams)
        if len(fns) == 1:
            spec = fns[0]
        elif len(fns) == n and all(callable(f) for f in fns):
            spec = _CallablesCoMap(tuple(fns))
            name = name or ", ".join(describe(f) for f in fns)
        else:
            raise TypeError(
                f"comap takes a CoMapFunction or {n} callables (one per stream), got {len(fns)}"
            )
        factory = FunctionFactory("comap", spec)
        for port in range(n):
            if not callable(getattr(spec, f"map{port}", None)):
                raise TypeError(f"{factory.name} needs a map{port}() method for stream {port}")
        node = self._node("comap", factory, 1 if parallelism is None else parallelism, name)
        return self._env._add(node)

    def join(
        self, fn: Any, *, parallelism: int | None = None, name: str | None = None
    ) -> DataStream:
        """Join two keyed streams on their keys: a ``JoinFunction`` or ``fn(left, right)``.

        Both streams must be keyed (``.keyby(...)``) before ``connect``; records meet when their
        keys are equal.
        """
        if len(self.streams) != 2:
            raise TypeError(f"join takes exactly two streams, got {len(self.streams)}")
        for port, s in enumerate(self.streams):
            if s.transformation.key is None:
                raise TypeError(
                    f"join needs keyed streams: stream {port} ({s.transformation.label}) has no "
                    f"key; call .keyby(fn) on it before .connect()"
                )
        factory = FunctionFactory("join", fn)
        node = self._node("join", factory, 1 if parallelism is None else parallelism, name)
        return self._env._add(node)

    def __repr__(self) -> str:
        return f"<ConnectedStreams of {len(self.streams)}>"
