"""``DataStream``: the fluent API that records a pipeline as ``Transformation`` nodes.

Nothing runs here. ``env.submit()`` compiles the transformations into an ``ExecutionGraph``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.functions import CoMapFunction, FunctionFactory, describe
from ..core.transformation import Transformation

if TYPE_CHECKING:
    from .environment import BaseEnvironment

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

    def __init__(self, env: BaseEnvironment, transformation: Transformation) -> None:
        self._env = env
        self.transformation = transformation

    def _then(
        self,
        kind: str,
        fn: Any,
        parallelism: int | None,
        name: str | None,
        on_error: Any = "fail",
    ) -> DataStream:
        t = self.transformation
        factory = FunctionFactory(kind, fn)
        node = Transformation(
            kind,
            factory,
            [t],
            parallelism=1 if parallelism is None else parallelism,
            name=name,
            input_keys=[t.key],
            on_error=on_error,
        )
        return self._env._add(node)

    def map(
        self,
        fn: Any,
        *,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = "fail",
    ) -> DataStream:
        """Apply ``fn`` to every record (a ``MapFunction`` or any callable ``record -> result``).

        ``parallelism`` runs that many instances; ``on_error`` says what a record that makes
        ``fn`` raise does: ``"fail"`` the job (default), ``"skip"`` it (counted in the
        operator's errors), ``"dead_letter"`` (kept in ``job.dead_letters``), or a callable
        that receives each ``DeadLetter``. ``filter``, ``flatmap`` and ``sink`` take the same.
        """
        return self._then("map", fn, parallelism, name, on_error)

    def filter(
        self,
        fn: Any,
        *,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = "fail",
    ) -> DataStream:
        """Keep records for which ``fn(record)`` is true."""
        return self._then("filter", fn, parallelism, name, on_error)

    def flatmap(
        self,
        fn: Any,
        *,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = "fail",
    ) -> DataStream:
        """Replace each record with the records of the iterable ``fn(record)`` returns."""
        return self._then("flatmap", fn, parallelism, name, on_error)

    def keyby(self, fn: Any, *, name: str | None = None) -> DataStream:
        """Partition by ``fn(record)``: records pass unchanged, and every record with one key
        goes to the same instance of the next operator."""
        t = self.transformation
        key = FunctionFactory("keyby", fn)
        node = Transformation(
            "keyby",
            None,
            [t],
            parallelism=t.parallelism,
            name=name or key.name,
            key=key,
            input_keys=[t.key],
        )
        return self._env._add(node)

    def sink(
        self,
        fn: Any,
        *,
        parallelism: int | None = None,
        name: str | None = None,
        on_error: Any = "fail",
    ) -> DataStream:
        """Consume every record with ``fn(record)``: a ``SinkFunction``, ``print``,
        ``list.append``..."""
        return self._then("sink", fn, parallelism, name, on_error)

    def print(self, prefix: str = "", *, name: str | None = None) -> DataStream:
        """Print every record, after ``prefix`` if one is given."""
        if prefix:

            def show(record: Any) -> None:
                builtins.print(prefix, record)

            show.__name__ = "print"
            return self._then("sink", show, None, name)
        return self._then("sink", builtins.print, None, name)

    def connect(self, other: DataStream | ConnectedStreams) -> ConnectedStreams:
        """Combine with ``other`` for ``comap`` (one function per stream) or a keyed ``join``."""
        streams = other.streams if isinstance(other, ConnectedStreams) else [other]
        return ConnectedStreams(self._env, [self, *streams])

    def __repr__(self) -> str:
        return f"<DataStream after {self.transformation.label}>"


class _CallablesCoMap(CoMapFunction):
    """``comap(f0, f1, ...)`` with plain callables: ``mapN`` calls the N-th."""

    def __init__(self, fns: tuple[Callable[[Any], Any], ...]) -> None:
        self._fns = fns
        for i, fn in enumerate(fns):
            setattr(self, f"map{i}", fn)


class ConnectedStreams:
    """Two or more streams combined for ``comap`` or ``join``."""

    def __init__(self, env: BaseEnvironment, streams: list[DataStream]) -> None:
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
