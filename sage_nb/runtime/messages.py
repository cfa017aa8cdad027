"""The messages that travel between callers and service tasks.

A request goes on its service's request queue; the task that executes it hands a response to the
request's ``response_target`` (the caller's waiter or future). The response names the request id
it answers, and the target checks it, so a response can never complete the wrong call.
"""

from __future__ import annotations

import contextvars
import traceback
from typing import Any, Protocol

__all__ = [
    "RemoteError",
    "ResponseTarget",
    "ServiceRequest",
    "ServiceResponse",
    "error_response",
    "qualified_name",
]


class ResponseTarget(Protocol):
    """Whatever waits for a response: ``deliver`` is called once, from the service's thread.

    It returns True if the response settled the call, False if its caller had given up
    first (timed out, cancelled, interrupted): then the caller counted the outcome, and the
    deliverer must not count it again."""

    def deliver(self, response: ServiceResponse) -> bool: ...


def qualified_name(kind: type) -> str:
    """How sage_nb names a type in messages: ``ValueError``, ``Model`` (defined in a notebook),
    ``mypkg.errors.Retry``."""
    if kind.__module__ in ("builtins", "__main__"):
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


class RemoteError:
    """An exception raised by a service, as data: type name, message and traceback text.

    ``exception`` is the original object where the service runs in the caller's process; it is
    ``None`` after the error crossed a process boundary.
    """

    __slots__ = ("exception", "message", "traceback", "type_name")

    def __init__(
        self,
        type_name: str,
        message: str,
        traceback_text: str,
        exception: BaseException | None = None,
    ) -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback_text
        self.exception = exception

    @classmethod
    def from_exception(cls, exc: BaseException, *, keep: bool = True) -> RemoteError:
        kind = type(exc)
        text = "".join(traceback.format_exception(kind, exc, exc.__traceback__))
        return cls(qualified_name(kind), str(exc), text, exc if keep else None)

    def __reduce__(self) -> tuple[Any, ...]:
        # The live exception (and its frames) stays in the process that raised it.
        return (RemoteError, (self.type_name, self.message, self.traceback))

    def __repr__(self) -> str:
        return f"RemoteError({self.type_name}: {self.message})"


class ServiceRequest:
    """One call to a service.

    Fields follow the reference: ``request_id, service_name, method_name, args, kwargs, timeout``
    and the response target. ``deadline`` is the ``time.monotonic()`` instant after which the
    request must not start. ``context`` is the caller's ``contextvars`` context when the
    environment propagates it (in a notebook: the service prints under the caller's cell).
    """

    __slots__ = (
        "args",
        "context",
        "deadline",
        "kwargs",
        "method_name",
        "request_id",
        "response_target",
        "service_name",
        "timeout",
    )

    def __init__(
        self,
        request_id: int,
        service_name: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        deadline: float | None,
        response_target: ResponseTarget | None,
        context: contextvars.Context | None = None,
    ) -> None:
        self.request_id = request_id
        self.service_name = service_name
        self.method_name = method_name
        self.args = args
        self.kwargs = kwargs
        self.timeout = timeout
        self.deadline = deadline
        self.response_target = response_target
        self.context = context

    def __repr__(self) -> str:
        return (
            f"ServiceRequest(#{self.request_id} {self.service_name}.{self.method_name}"
            f" args={_short(self.args)} kwargs={_short(self.kwargs)})"
        )


class ServiceResponse:
    """The answer to one request: ``request_id, success, result, error, execution_time``."""

    __slots__ = ("error", "execution_time", "request_id", "result", "success")

    def __init__(
        self,
        request_id: int,
        success: bool,
        result: Any = None,
        error: RemoteError | None = None,
        execution_time: float = 0.0,
    ) -> None:
        self.request_id = request_id
        self.success = success
        self.result = result
        self.error = error
        self.execution_time = execution_time

    def __repr__(self) -> str:
        outcome = f"result={_short(self.result)}" if self.success else f"error={self.error!r}"
        return f"ServiceResponse(#{self.request_id} {outcome} in {self.execution_time:.6f}s)"


def error_response(request: ServiceRequest, exc: BaseException) -> ServiceResponse:
    """A failed response carrying ``exc`` itself: an error of sage_nb's own (the service never
    ran the request, or its caller's side failed it), so no remote traceback."""
    return ServiceResponse(
        request.request_id, False, None, RemoteError(type(exc).__name__, str(exc), "", exc)
    )


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
