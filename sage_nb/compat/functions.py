"""SAGE's function classes that differ from sage_nb's own, and its helpers for functions.

``FlatMapFunction`` adds SAGE's collector (``self.collect(item)``) and emits a non-iterable
result as one record; ``FutureFunction`` is the placeholder of ``env.from_future``;
``wrap_lambda`` turns a plain function into a function class, as SAGE does for lambdas.
Everything else SAGE programs import is sage_nb's own class (see ``sage_nb.compat``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from ..core.functions import (
    BaseFunction,
    FilterFunction,
    KeyByFunction,
    MapFunction,
    SinkFunction,
    SourceFunction,
)
from ..core.functions import FlatMapFunction as _FlatMapFunction

__all__ = ["Collector", "FlatMapFunction", "FutureFunction", "Packet", "wrap_lambda"]


class Collector:
    """Collects records a flatmap emits with ``collect(item)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.items: list[Any] = []

    def collect(self, data: Any) -> None:
        self.items.append(data)

    def get_collected_data(self) -> list[Any]:
        return list(self.items)

    def get_collected_count(self) -> int:
        return len(self.items)

    def clear(self) -> None:
        self.items.clear()


def _flatten(result: Any) -> list[Any]:
    """SAGE's flatmap results: an iterable (not text or a dict) item by item, None nothing, any
    other value as one record."""
    if result is None:
        return []
    if isinstance(result, (str, bytes, dict)) or not isinstance(result, Iterable):
        return [result]
    return list(result)


class FlatMapFunction(_FlatMapFunction):
    """SAGE's flatmap: ``execute(data)`` returns an iterable, one value or None, and may also
    ``self.collect(item)``; everything collected is emitted after what it returned."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        execute = cls.__dict__.get("execute")
        if execute is None or getattr(execute, "_sage_collects", False):
            return

        @functools.wraps(execute)
        def collecting(self: FlatMapFunction, data: Any) -> list[Any]:
            out = _flatten(execute(self, data))
            collector = self.__dict__.get("_collector")
            if collector is not None and collector.items:
                out.extend(collector.items)
                collector.clear()
            return out

        collecting._sage_collects = True  # type: ignore[attr-defined]
        setattr(cls, "execute", collecting)  # noqa: B010 - a subclass's own method, wrapped

    def collect(self, data: Any) -> None:
        """Emit ``data`` (after what ``execute`` returns for the current record)."""
        collector = self.__dict__.get("_collector")
        if collector is None:
            collector = self.__dict__["_collector"] = Collector()
        collector.collect(data)

    def insert_collector(self, collector: Collector) -> None:
        self.__dict__["_collector"] = collector


class FutureFunction(BaseFunction):
    """The placeholder behind ``env.from_future(name)``: never called."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            "a FutureFunction is a placeholder for a feedback edge; fill it with "
            "stream.fill_future(future_stream)"
        )

    __call__ = execute
    call = execute


_KINDS: dict[str, type[BaseFunction]] = {
    "map": MapFunction,
    "filter": FilterFunction,
    "flatmap": FlatMapFunction,
    "sink": SinkFunction,
    "source": SourceFunction,
    "keyby": KeyByFunction,
}


def _guess_kind(func: Callable[..., Any]) -> str:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return "map"
    if not sig.parameters:
        return "source"
    returns = sig.return_annotation
    if returns is bool or returns == "bool":
        return "filter"
    if returns is None or returns == "None":
        return "sink"
    if getattr(returns, "__origin__", None) is list or str(returns).startswith("list"):
        return "flatmap"
    return "map"


def wrap_lambda(func: Callable[..., Any], func_type: str | None = None) -> type[BaseFunction]:
    """A function class whose ``execute`` calls ``func``, of kind ``func_type`` ("map",
    "filter", "flatmap", "sink", "source", "keyby"; guessed from the signature if None)."""
    kind = func_type or _guess_kind(func)
    base = _KINDS.get(kind)
    if base is None:
        raise ValueError(f"func_type must be one of {', '.join(_KINDS)}, got {func_type!r}")
    execute: Callable[..., Any]
    if kind == "source":
        execute = lambda self: func()  # noqa: E731
    elif kind == "filter":
        execute = lambda self, data: bool(func(data))  # noqa: E731
    else:
        execute = lambda self, data: func(data)  # noqa: E731

    name = getattr(func, "__name__", "lambda")
    title = "Lambda" if name == "<lambda>" else name
    return type(f"{title}{base.__name__}", (base,), {"execute": execute, "__doc__": func.__doc__})


class Packet:
    """SAGE's envelope of a record between operators (``payload``, its input port and key).

    sage_nb moves records without envelopes; programs that build or inspect packets (tests of
    SAGE's, mostly) get this small class with SAGE's fields and methods.
    """

    def __init__(
        self,
        payload: Any,
        input_index: int = 0,
        partition_key: Any = None,
        partition_strategy: str | None = None,
    ) -> None:
        self.payload = payload
        self.input_index = input_index
        self.partition_key = partition_key
        self.partition_strategy = partition_strategy

    def is_keyed(self) -> bool:
        return self.partition_key is not None

    def inherit_partition_info(self, new_payload: Any) -> Packet:
        return Packet(new_payload, self.input_index, self.partition_key, self.partition_strategy)

    def update_key(self, new_key: Any, new_strategy: str | None = None) -> Packet:
        return Packet(
            self.payload, self.input_index, new_key, new_strategy or self.partition_strategy
        )

    def copy(self) -> Packet:
        return Packet(self.payload, self.input_index, self.partition_key, self.partition_strategy)

    def __repr__(self) -> str:
        key = f", key={self.partition_key!r}" if self.is_keyed() else ""
        return f"Packet({self.payload!r}, input={self.input_index}{key})"
