"""What crosses between a caller and a service actor, and how it is (de)serialized.

One Ray call to a service actor carries a batch of requests and returns a batch of results,
each packed into one ``bytes`` frame::

    arguments  pack_batch([(request_id, deadline, payload), ...])
               payload = pickle((method, args, kwargs))
    result     pack_reply(pid, version, [(request_id, status, payload, execution_time), ...])

Frames hold only ints, floats, strings, bytes and None, so the C pickler writes them. Ray
passes a ``bytes`` argument or result through untouched, which costs less per call than any
container it would serialize itself (an ``int`` included): the frame is why a call through
sage_nb is not slower than a raw actor call (``python -m bench.ray_figures``). The pickled
arguments or result of a call over ``LARGE`` bytes travel beside the frame instead (their
place in the frame holds their index), so they are not copied into the frame and out again.

``deadline`` is a ``time.time()`` instant (``None``: no limit): a request that has not started
by then is answered ``EXPIRED`` and never runs, as with threads. Each request's arguments and
each result are pickled on their own (by ``ray.cloudpickle``), so a value that cannot be
serialized fails that call alone, with an error naming the service, the method and the type,
and one bad record never loses a whole batch.

Errors travel as ``(type name, message, traceback text, exception)``: the exception object
when it survives pickling (so retry policies can match its type and ``__cause__`` is set),
else ``None``. sage_nb's own errors are rebuilt from their fields, because their constructors
do not take their message.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

from ...errors import ServiceNotFoundError, ServiceTimeoutError
from ...runtime.messages import RemoteError, ServiceResponse, qualified_name
from .errors import ServiceSerializationError

__all__ = [
    "ERROR",
    "EXPIRED",
    "OK",
    "dumps",
    "encode_call",
    "encode_error",
    "encode_result",
    "loads",
    "pack_batch",
    "pack_reply",
    "response_from_wire",
    "type_name",
    "unpack_batch",
    "unpack_reply",
]

OK, ERROR, EXPIRED = 0, 1, 2


#: Values the C pickler writes exactly as cloudpickle would (nothing by reference to a module
#: the other process may not have), about five times faster.
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


def dumps(value: Any) -> bytes:
    from ray import cloudpickle

    return cloudpickle.dumps(value, protocol=5)  # type: ignore[no-any-return]


def _dumps_plain(value: Any) -> bytes:
    """``dumps`` for a value known to hold only ``_PLAIN`` values."""
    return pickle.dumps(value, protocol=5)


#: Payloads longer than this travel beside the frame, as values of their own.
LARGE = 1 << 20

BatchEntry = tuple[int, float | None, bytes]  # (request_id, deadline, payload)
Batch = list[BatchEntry]
Entry = tuple[int, int, Any, float]


def _set_aside(items: list[Any], at: int) -> list[Any]:
    """Replace each item's bytes at index ``at`` that is over ``LARGE`` by its number in the
    returned list of such bytes (in place)."""
    large: list[Any] = []
    for i, item in enumerate(items):
        value = item[at]
        if type(value) is bytes and len(value) > LARGE:
            items[i] = (*item[:at], len(large), *item[at + 1 :])
            large.append(value)
    return large


def _put_back(items: list[Any], at: int, large: tuple[Any, ...] | list[Any]) -> list[Any]:
    if not large:
        return items
    return [
        (*item[:at], large[item[at]], *item[at + 1 :]) if type(item[at]) is int else item
        for item in items
    ]


def pack_batch(batch: Batch) -> tuple[Any, ...]:
    """The arguments of the Ray call that carries ``batch``: its frame, then its large
    payloads."""
    batch = list(batch)
    large = _set_aside(batch, 2)
    return (_dumps_plain(batch), *large)


def unpack_batch(frame: bytes, large: tuple[Any, ...]) -> Batch:
    return _put_back(pickle.loads(frame), 2, large)


def pack_reply(pid: int, version: int, entries: list[Entry]) -> Any:
    """The result of a Ray call: its frame, or a list of the frame and its large payloads."""
    entries = list(entries)
    large = _set_aside(entries, 2)
    frame = _dumps_plain((pid, version, entries))
    return [frame, *large] if large else frame


def unpack_reply(data: Any) -> tuple[int, int, list[Entry]]:
    if type(data) is list:
        pid, version, entries = pickle.loads(data[0])
        return pid, version, _put_back(entries, 2, data[1:])
    return pickle.loads(data)  # type: ignore[no-any-return]


def loads(data: bytes) -> Any:
    return pickle.loads(data)  # cloudpickle writes standard pickles


def type_name(value: Any) -> str:
    return qualified_name(type(value))


def encode_call(service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Pickle one call; raise ``ServiceSerializationError`` naming the argument that fails."""
    plain = _PLAIN
    if not kwargs and all(type(a) in plain for a in args):
        return _dumps_plain((method, args, kwargs))
    try:
        return dumps((method, args, kwargs))
    except Exception as exc:
        culprit, detail = _first_unpicklable(
            [(f"argument {i}", a) for i, a in enumerate(args)]
            + [(f"keyword argument {k!r}", v) for k, v in kwargs.items()],
            exc,
        )
        raise ServiceSerializationError(service, method, "arguments", culprit, detail) from exc


def _first_unpicklable(named: list[tuple[str, Any]], exc: BaseException) -> tuple[str, str]:
    for label, value in named:
        try:
            dumps(value)
        except Exception as inner:
            return f"{label} ({type_name(value)})", f"{type(inner).__name__}: {inner}"
    return "a value", f"{type(exc).__name__}: {exc}"


def encode_result(
    request_id: int, service: str, method: str, result: Any, elapsed: float
) -> tuple[int, int, Any, float]:
    """The wire entry of a call that returned ``result``; an error entry if it cannot be
    pickled."""
    if type(result) in _PLAIN:
        return (request_id, OK, _dumps_plain(result), elapsed)
    try:
        return (request_id, OK, dumps(result), elapsed)
    except Exception as exc:
        error = ServiceSerializationError(
            service, method, "result", type_name(result), f"{type(exc).__name__}: {exc}"
        )
        return (request_id, ERROR, encode_error(error), elapsed)


def encode_error(exc: BaseException) -> tuple[str, str, str, bytes | None]:
    """An exception as data: type name, message, traceback text, pickled portable copy."""
    remote = RemoteError.from_exception(exc, keep=False)
    portable = _portable(exc)
    blob: bytes | None = None
    if portable is not None:
        try:
            blob = dumps(portable)
        except Exception:
            blob = None
    return (remote.type_name, remote.message, remote.traceback, blob)


def _portable(exc: BaseException) -> BaseException | None:
    """A copy of ``exc`` that unpickles into an equivalent exception, or None."""
    if isinstance(exc, ServiceTimeoutError):
        return _Rebuild(
            ServiceTimeoutError,
            (exc.service_name, exc.method_name, exc.timeout),
            {"started": exc.started},
        )
    if isinstance(exc, ServiceNotFoundError):
        if exc.method_name is None:
            return _Rebuild(ServiceNotFoundError, (exc.service_name, exc.registered), {})
        return _Rebuild(
            ServiceNotFoundError,
            (exc.service_name,),
            {"method": exc.method_name, "methods": exc.registered},
        )
    return exc  # user exceptions, and errors built from their message or with __reduce__


class _Rebuild(Exception):
    """Pickles as ``cls(*args, **kwargs)``: for errors whose ``args`` is only their message."""

    def __init__(self, cls: type[BaseException], args: tuple[Any, ...], kwargs: dict[str, Any]):
        super().__init__()
        self._call = (cls, args, kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, self._call)


def _rebuild(cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BaseException:
    return cls(*args, **kwargs)  # type: ignore[no-any-return]


def decode_error(payload: tuple[str, str, str, bytes | None]) -> RemoteError:
    name, message, traceback_text, blob = payload
    exc: BaseException | None = None
    if blob is not None:
        try:
            exc = loads(blob)
        except Exception:  # its class may not exist here: keep the text
            exc = None
    return RemoteError(name, message, traceback_text, exc)


def response_from_wire(
    entry: tuple[int, int, Any, float], service: str, method: str, timeout: float | None
) -> ServiceResponse:
    """Turn one wire entry into the ``ServiceResponse`` a caller's target expects."""
    rid, status, payload, elapsed = entry
    if status == OK:
        try:
            return ServiceResponse(rid, True, loads(payload), None, elapsed)
        except Exception as exc:
            error = ServiceSerializationError(
                service, method, "result", "a value", f"{type(exc).__name__}: {exc}"
            )
            return ServiceResponse(rid, False, None, RemoteError("", "", "", error), elapsed)
    if status == ERROR:
        return ServiceResponse(rid, False, None, decode_error(payload), elapsed)
    late = ServiceTimeoutError(service, method, timeout, started=False)
    return ServiceResponse(
        rid, False, None, RemoteError("ServiceTimeoutError", str(late), "", late)
    )


def wall_deadline(deadline: float | None) -> float | None:
    """A ``time.monotonic()`` deadline as a ``time.time()`` instant another process can check."""
    if deadline is None:
        return None
    return time.time() + (deadline - time.monotonic())
