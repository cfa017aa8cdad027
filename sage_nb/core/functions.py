"""Base classes for the functions users write, and how anything callable becomes one.

Wherever a function is expected, sage_nb accepts a subclass of one of these classes, an instance
of one, or a plain callable::

    stream.map(Enrich)              # a class: instantiated once per parallel instance
    stream.map(Enrich, table, k=3)  # ... as Enrich(table, k=3), with the very objects given
    stream.map(Enrich())            # an instance: used as is (copied for parallelism > 1)
    stream.map(lambda r: r + 1)     # a plain callable

Classes are instantiated when the job is submitted, one instance per parallel instance, each
given the same argument objects (no copies: a sink may fill a list it was handed). Functions
may define ``setup()`` (or ``setup(context)``) and ``close()``; they run on the operator's
thread before the first record and after the last. Inside ``execute``,
``self.call_service(...)`` calls a service.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .identity import ContextBound

if TYPE_CHECKING:
    from .calls import ServiceCaller

__all__ = [
    "BaseFunction",
    "BatchFunction",
    "CoMapFunction",
    "FilterFunction",
    "FlatMapFunction",
    "JoinFunction",
    "KeyByFunction",
    "MapFunction",
    "SinkFunction",
    "SourceFunction",
    "StopSignal",
]


class StopSignal:
    """Return this (the class or an instance) from ``SourceFunction.execute`` to end a stream.

    An instance may carry a ``name`` (and anything else, as SAGE's does): it names the source
    that stopped, for logs.
    """

    def __init__(self, name: str | None = None, *args: Any, **kwargs: Any) -> None:
        self.name = name
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"StopSignal({self.name!r})" if self.name is not None else "StopSignal()"


class BaseFunction(ContextBound):
    """Base of every user function: gives it ``ctx``, ``name``, ``logger`` and the service call
    helpers.

    ``__init__`` takes any arguments and ignores them, so ``super().__init__(**kwargs)`` works
    from any subclass. ``ctx`` is set when the job starts (an ``OperatorContext``):
    ``ctx.name`` (the operator), ``ctx.parallel_index`` (also ``ctx.index``) and
    ``ctx.parallelism``, and on a keyed stream ``ctx.get_key()``, the current record's key.
    ``self.name`` is ``<operator name>_<parallel index>`` once running; ``self.logger`` is a
    ``logging.Logger`` named after it (assign ``self.logger`` to use your own).
    """

    _context_name = "function_name"
    _logger_prefix = "sage_nb.function"

    def _caller(self) -> ServiceCaller:
        ctx = getattr(self, "ctx", None)
        if ctx is None:
            raise RuntimeError(
                f"{type(self).__name__} is not running in a job, so it cannot call services; "
                f"use env.call_service(...) outside a pipeline"
            )
        return ctx.proxy  # type: ignore[no-any-return]


class MapFunction(BaseFunction):
    """One record in, one record out: implement ``execute(data) -> result``."""

    def execute(self, data: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(data)")


class FilterFunction(BaseFunction):
    """Keep the records for which ``execute(data)`` is true."""

    def execute(self, data: Any) -> bool:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(data)")


class FlatMapFunction(BaseFunction):
    """One record in, any number out: ``execute(data)`` returns an iterable (or None)."""

    def execute(self, data: Any) -> Iterable[Any] | None:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(data)")


class SinkFunction(BaseFunction):
    """Consumes records: ``execute(data)``; its return value is ignored."""

    def execute(self, data: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(data)")


class KeyByFunction(BaseFunction):
    """``execute(data)`` returns the record's key; records with one key meet one instance."""

    def execute(self, data: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(data)")


class SourceFunction(BaseFunction):
    """An unbounded source: ``execute()`` returns the next record each time it is called.

    Return ``StopSignal`` (or raise ``StopIteration``) to end the stream. ``execute`` may block
    while it waits for data; ``job.stop()`` takes effect after it returns.
    """

    def execute(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")


class BatchFunction(BaseFunction):
    """A finite source: ``execute()`` returns the next record, or ``None`` when exhausted.

    Define ``__len__`` to let progress displays show a total.
    """

    def execute(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")


class CoMapFunction(BaseFunction):
    """For connected streams: ``map0(data)`` handles the first stream, ``map1(data)`` the second.

    More streams connected in a row use ``map2``, ``map3`` and so on.
    """

    def map0(self, data: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement map0(data)")

    def map1(self, data: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement map1(data)")


class JoinFunction(BaseFunction):
    """A keyed join of two connected, keyed streams.

    ``execute(payload, key, tag)`` is called for every record (``tag`` is 0 for the first stream,
    1 for the second) and returns an iterable of results (or None). The default implementation
    is an inner symmetric hash join: it remembers every record per key and side, and for each new
    record emits ``join(left, right)`` with every remembered record of the other side. Override
    ``join`` for the usual case, or ``execute`` for windows, outer joins or expiry.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._seen: dict[Any, tuple[list[Any], list[Any]]] = {}

    def join(self, left: Any, right: Any) -> Any:
        return (left, right)

    def execute(self, payload: Any, key: Any, tag: int) -> Iterable[Any] | None:
        seen = self.__dict__.get("_seen")
        if seen is None:  # a subclass __init__ that did not call super().__init__()
            seen = self._seen = {}
        sides = seen.get(key)
        if sides is None:
            sides = seen[key] = ([], [])
        sides[tag].append(payload)
        if tag == 0:
            return [self.join(payload, other) for other in sides[1]]
        return [self.join(other, payload) for other in sides[0]]


class _CallableJoin(JoinFunction):
    """``join(fn)`` with a plain callable ``fn(left, right)``."""

    def __init__(self, fn: Callable[[Any, Any], Any]) -> None:
        super().__init__()
        self._fn = fn

    def join(self, left: Any, right: Any) -> Any:
        return self._fn(left, right)


#: The method a function of each kind implements.
ENTRY_POINTS = {
    "map": "execute",
    "filter": "execute",
    "flatmap": "execute",
    "sink": "execute",
    "keyby": "execute",
    "source": "execute",
    "batch": "execute",
    "comap": "map0",
    "join": "execute",
}


def describe(spec: Any) -> str:
    """A short human name for a function spec: class name, function name or repr."""
    if inspect.isclass(spec):
        return spec.__name__
    name = getattr(spec, "__name__", None)
    if name == "<lambda>":
        return "lambda"
    if name is not None:
        return str(name)
    return type(spec).__name__


class FunctionFactory:
    """Turns what a user passed (class, instance or callable) into per-instance functions.

    ``create(index)`` returns the object whose entry point the runtime calls: a fresh instance of
    a class (built from ``args`` and ``kwargs``, the objects themselves), the given instance (a
    copy for every parallel instance after the first), or the callable itself (plain callables
    are shared).
    """

    def __init__(
        self,
        kind: str,
        spec: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.spec = spec
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.name = describe(spec)
        if (self.args or self.kwargs) and not inspect.isclass(spec):
            given = ", ".join([*map(repr, self.args), *(f"{k}=" for k in self.kwargs)])
            raise TypeError(
                f"{kind}({self.name}, {given}): arguments after the function are constructor "
                f"arguments, so the function must be a class; got {type(spec).__name__}. Pass "
                f"the class ({kind}(MyFunction, ...)) or bind them yourself "
                f"(functools.partial)"
            )
        entry = ENTRY_POINTS[kind]
        if kind == "join" and not _has(spec, "execute"):
            if not callable(spec):
                raise TypeError(
                    f"join needs a JoinFunction or a callable (left, right), got {spec!r}"
                )
            self.spec = _CallableJoin(spec)
        elif inspect.isclass(spec):
            if not _has(spec, entry):
                raise TypeError(
                    f"{spec.__name__} cannot be used for {kind}: it has no {entry}() method"
                )
        elif not _has(spec, entry) and not callable(spec):
            raise TypeError(
                f"{kind} needs a function, a class with {entry}() or an instance of one; "
                f"got {type(spec).__name__}: {spec!r}"
            )

    def create(self, index: int) -> Any:
        spec = self.spec
        if inspect.isclass(spec):
            return spec(*self.args, **self.kwargs)
        if _has(spec, ENTRY_POINTS[self.kind]) and not inspect.isroutine(spec):
            return spec if index == 0 else _copy_without_context(spec)
        return spec

    def entry(self, fn: Any, name: str | None = None) -> Callable[..., Any]:
        """The callable for records: ``fn.execute`` (or ``name``) for objects, else ``fn``."""
        method = name or ENTRY_POINTS[self.kind]
        if not inspect.isroutine(fn) and _has(fn, method):
            return getattr(fn, method)  # type: ignore[no-any-return]
        return fn  # type: ignore[no-any-return]


#: What an operator task sets on a function instance when its job starts (see runtime/tasks.py).
_RUNTIME_ATTRIBUTES = ("ctx", "call_service", "call_service_async")


def _copy_without_context(spec: Any) -> Any:
    """A deep copy of a user's function instance, for another parallel instance.

    An earlier job left its context on ``spec`` (a proxy holding queues and locks, which cannot
    be copied, and belongs to that job anyway); the copy gets its own when its task starts.
    """
    state = getattr(spec, "__dict__", {})
    left = [name for name in _RUNTIME_ATTRIBUTES if name in state]
    clone = copy.deepcopy(spec, {id(state[name]): None for name in left})
    for name in left:
        vars(clone).pop(name, None)
    return clone


def _has(obj: Any, method: str) -> bool:
    attr = getattr(obj, method, None)
    return callable(attr)
