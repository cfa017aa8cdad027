"""``DataStream``: the fluent API that records a pipeline as ``Transformation`` nodes.

Nothing runs here. ``env.submit()`` compiles the transformations into an ``ExecutionGraph``.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.functions import CoMapFunction, FunctionFactory, SinkFunction, describe
from ..core.transformation import Transformation

if TYPE_CHECKING:
    from .pipeline import PipelineBuilder

__all__ = ["ConnectedStreams", "DataStream", "PrintSink"]


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
        the log at DEBUG level (see ``PrintSink``).
        """
        return self.sink(_printer(self._env), prefix, name=name or "print")

    def fill_future(self, future: DataStream) -> None:
        """Feed this stream's records back into ``future`` (made by ``env.from_future``),
        closing a loop."""
        target = getattr(future, "transformation", None)
        if target is None or target.kind != "future":
            raise ValueError(
                f"fill_future needs a stream made by env.from_future(name), got {future!r}"
            )
        if target.filled_by is not None:
            raise RuntimeError(
                f"future stream {target.name!r} is already filled by {target.filled_by.label}"
            )
        target.filled_by = self.transformation

    def connect(self, other: DataStream | ConnectedStreams) -> ConnectedStreams:
        """Combine with ``other`` for ``comap`` (one function per stream) or a keyed ``join``."""
        streams = other.streams if isinstance(other, ConnectedStreams) else [other]
        return ConnectedStreams(self._env, [self, *streams])

    def __repr__(self) -> str:
        return f"<DataStream after {self.transformation.label}>"


class PrintSink(SinkFunction):
    """SAGE's print sink: ``.print()`` in ``sage_nb.compat``.

    The first record is printed as ``🔍 Stream output: {prefix}{separator}{record}`` with a note
    that the others go to the log (``self.logger`` at DEBUG; ``quiet=True`` prints the line
    without the decoration). ``colored`` is accepted and ignored.
    """

    def __init__(
        self,
        prefix: str = "",
        separator: str = " | ",
        colored: bool = True,
        quiet: bool = False,
        **kwargs: Any,
    ) -> None:
        self.prefix = prefix
        self.separator = separator
        self.quiet = quiet
        self._printed = False

    def format(self, data: Any) -> str:
        text = _format_record(data)
        return f"{self.prefix}{self.separator}{text}" if self.prefix else text

    def execute(self, data: Any) -> None:
        if self._printed:
            self.logger.debug("%s", self.format(data))
            return
        self._printed = True
        if self.quiet:
            builtins.print(self.format(data))
            return
        builtins.print(f"\U0001f50d Stream output: {self.format(data)}")
        builtins.print("   (Further outputs logged. Check logs for details.)")


def _format_record(data: Any) -> str:
    """A record as SAGE's print sink shows it: dicts as ``k=v``, long lists shortened."""
    if data is None:
        return "None"
    if isinstance(data, (str, int, float, bool)):
        return str(data)
    if isinstance(data, dict):
        return ", ".join(f"{k}={v}" for k, v in data.items())
    if isinstance(data, (list, tuple)):
        if len(data) <= 5:
            return str(list(data))
        head = ", ".join(map(str, data[:5]))
        return f"[{head}, ... (+{len(data) - 5} more)]"
    state = getattr(data, "__dict__", None)
    if state:
        fields = ", ".join(f"{k}={v}" for k, v in list(state.items())[:3])
        return f"{type(data).__name__}({fields})"
    return str(data)


class _CallablesCoMap(CoMapFunction):
    """``comap(f0, f1, ...)`` with plain callables: ``mapN`` calls the N-th."""

    def __init__(self, fns: tuple[Callable[[Any], Any], ...]) -> None:
        self._fns = fns
        for i, fn in enumerate(fns):
            setattr(self, f"map{i}", fn)


class ConnectedStreams:
    """Two or more streams combined: ``comap`` (a function per stream), ``join`` (keyed
    streams), or ``map``/``filter``/``flatmap``/``sink``/``print`` over the union of their
    records; ``keyby`` keys every stream."""

    def __init__(self, env: PipelineBuilder, streams: list[DataStream]) -> None:
        self._env = env
        self.streams = streams

    def connect(self, other: DataStream | ConnectedStreams) -> ConnectedStreams:
        more = other.streams if isinstance(other, ConnectedStreams) else [other]
        return ConnectedStreams(self._env, [*self.streams, *more])

    def _node(
        self,
        kind: str,
        factory: FunctionFactory,
        parallelism: int | None,
        name: str | None,
        on_error: Any = None,
    ) -> DataStream:
        inputs = [s.transformation for s in self.streams]
        semantics = self._env.semantics
        node = Transformation(
            kind,
            factory,
            inputs,
            parallelism=1 if parallelism is None else parallelism,
            name=name,
            input_keys=[t.key for t in inputs],
            on_error=semantics.on_error if on_error is None else on_error,
            drop_none=semantics.drop_none and kind in ("map", "comap"),
        )
        return self._env._add(node)

    # -- the union of the streams ------------------------------------------------------------
    def map(
        self,
        fn: Any,
        *args: Any,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = None,
        **kwargs: Any,
    ) -> DataStream:
        """Apply ``fn`` to every record of every stream (their union), as ``DataStream.map``."""
        factory = FunctionFactory("map", fn, args, kwargs)
        return self._node("map", factory, parallelism, name, on_error)

    def filter(
        self,
        fn: Any,
        *args: Any,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = None,
        **kwargs: Any,
    ) -> DataStream:
        """Keep the records of every stream for which ``fn(record)`` is true."""
        factory = FunctionFactory("filter", fn, args, kwargs)
        return self._node("filter", factory, parallelism, name, on_error)

    def flatmap(
        self,
        fn: Any,
        *args: Any,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = None,
        **kwargs: Any,
    ) -> DataStream:
        """Replace every record of every stream with the records ``fn(record)`` returns."""
        factory = FunctionFactory("flatmap", fn, args, kwargs)
        return self._node("flatmap", factory, parallelism, name, on_error)

    def sink(
        self,
        fn: Any,
        *args: Any,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = None,
        **kwargs: Any,
    ) -> DataStream:
        """Consume every record of every stream; returns the sink's stream (as SAGE does)."""
        factory = FunctionFactory("sink", fn, args, kwargs)
        return self._node("sink", factory, parallelism, name, on_error)

    def print(self, prefix: str = "", *, name: str | None = None) -> DataStream:
        """Print every record of every stream (see ``DataStream.print``)."""
        return self.sink(_printer(self._env), prefix, name=name or "print")

    def keyby(self, fn: Any, *args: Any, strategy: str = "hash", **kwargs: Any) -> ConnectedStreams:
        """Key every stream: by ``fn`` (each stream), or by a list or tuple of key functions,
        one per stream. Returns the connected keyed streams (for ``join`` or ``comap``)."""
        n = len(self.streams)
        fns = list(fn) if isinstance(fn, (list, tuple)) else [fn] * n
        if len(fns) != n:
            raise ValueError(f"keyby got {len(fns)} key functions for {n} connected streams")
        keyed = [s.keyby(f, *args, strategy=strategy, **kwargs) for s, f in zip(self.streams, fns)]
        return ConnectedStreams(self._env, keyed)

    # -- a function per stream ---------------------------------------------------------------
    def comap(
        self,
        fn: Any,
        *more: Any,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = None,
        **kwargs: Any,
    ) -> DataStream:
        """Map each stream with its own function: a ``CoMapFunction`` (``map0``, ``map1``, …;
        a class may be followed by its constructor's arguments) or one plain callable per
        stream."""
        n = len(self.streams)
        args: tuple[Any, ...] = ()
        spec: Any
        if inspect.isclass(fn):
            spec, args = fn, more
        elif not more:
            spec = fn
        elif len(more) + 1 == n and all(callable(f) for f in (fn, *more)):
            spec = _CallablesCoMap((fn, *more))
            name = name or ", ".join(describe(f) for f in (fn, *more))
        else:
            raise TypeError(
                f"comap takes a CoMapFunction (class or instance) or {n} callables (one per "
                f"stream), got {len(more) + 1} arguments"
            )
        factory = FunctionFactory("comap", spec, args, kwargs)
        for port in range(n):
            if not callable(getattr(spec, f"map{port}", None)):
                raise TypeError(f"{factory.name} needs a map{port}() method for stream {port}")
        return self._node("comap", factory, parallelism, name, on_error)

    def join(
        self,
        fn: Any,
        *args: Any,
        parallelism: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> DataStream:
        """Join two keyed streams on their keys: a ``JoinFunction`` (class, with its
        constructor's arguments, or instance) or ``fn(left, right)``.

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
        factory = FunctionFactory("join", fn, args, kwargs)
        return self._node("join", factory, parallelism, name, "fail")

    def __repr__(self) -> str:
        return f"<ConnectedStreams of {len(self.streams)}>"


class _Printer(SinkFunction):
    """``print`` after an optional prefix."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def execute(self, data: Any) -> None:
        if self.prefix:
            builtins.print(self.prefix, data)
        else:
            builtins.print(data)


def _printer(env: PipelineBuilder) -> type[SinkFunction]:
    """The sink ``.print()`` adds: SAGE's first-record ``PrintSink`` or a plain ``print``."""
    return PrintSink if env.semantics.print_first_only else _Printer
