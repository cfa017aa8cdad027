"""Exceptions raised by sage_nb.

Every message says what failed, with the value, and what to do next::

    no service 'tokenize' (registered: 'embed', 'rank'); define it with %%sage_service tokenize
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "JobCancelledError",
    "JobFailedError",
    "OperatorError",
    "SageError",
    "ServiceCallError",
    "ServiceExistsError",
    "ServiceNotFoundError",
    "ServiceOverloadedError",
    "ServiceTimeoutError",
    "ServiceUnavailableError",
]


class SageError(Exception):
    """Base class of every sage_nb error."""


def _names(names: Iterable[str]) -> str:
    listed = ", ".join(repr(n) for n in sorted(names))
    return listed or "none"


class ServiceNotFoundError(SageError, LookupError):
    """A call named a service, or a method of a service, that does not exist."""

    def __init__(
        self,
        name: str,
        registered: Iterable[str] = (),
        *,
        method: str | None = None,
        methods: Iterable[str] = (),
    ) -> None:
        self.service_name = name
        self.method_name = method
        if method is None:
            self.registered = tuple(sorted(registered))
            if isinstance(name, str) and name.isidentifier():
                fix = f"define it with %%sage_service {name} or env.register_service({name!r}, cls)"
            else:  # the name is never raw text in the message: it may hold a line break
                fix = "service names are Python identifiers, such as 'profile'"
            msg = f"no service {name!r} (registered: {_names(self.registered)}); {fix}"
        else:
            self.registered = tuple(sorted(methods))
            msg = (
                f"service {name!r} has no method {method!r} "
                f"(methods: {_names(self.registered)}); pass one of them as method="
            )
        super().__init__(msg)


class ServiceExistsError(SageError, ValueError):
    """``register_service`` was given a name that is already registered."""

    def __init__(self, name: str) -> None:
        self.service_name = name
        super().__init__(
            f"service {name!r} is already registered; pass replace=True to swap it "
            f"(or re-run its %%sage_service cell)"
        )


class ServiceTimeoutError(SageError, TimeoutError):
    """A service call did not complete before its deadline.

    ``started`` tells whether the service had begun executing the request. A request that had
    not started when its deadline passed is never executed.
    """

    def __init__(self, service: str, method: str, timeout: float | None, *, started: bool) -> None:
        self.service_name = service
        self.method_name = method
        self.timeout = timeout
        self.started = started
        what = "was still running" if started else "had not started (it will not run)"
        super().__init__(
            f"call to {service}.{method} timed out after {timeout:g} s and {what}; "
            f"raise timeout= or check the service with %sage_status"
        )


class ServiceUnavailableError(SageError, RuntimeError):
    """The service is stopped, stopping, or was never started, so the call cannot be answered."""


class ServiceOverloadedError(ServiceUnavailableError):
    """The service's request queue is full and its overflow policy is "fail"."""


class ServiceCallError(SageError, RuntimeError):
    """The service raised: carries the remote exception's type, message and traceback text.

    Where the service ran in this process, ``__cause__`` is the original exception, so a
    notebook shows the line of the service that raised.

    Attributes
    ----------
    service_name, method_name:
        What was called.
    remote_type:
        Qualified name of the exception class the service raised, e.g. ``"KeyError"``.
    remote_message:
        ``str()`` of that exception.
    remote_traceback:
        The formatted traceback, as text.
    """

    def __init__(
        self,
        service: str,
        method: str,
        remote_type: str,
        remote_message: str,
        remote_traceback: str = "",
    ) -> None:
        self.service_name = service
        self.method_name = method
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        super().__init__(f"service {service}.{method} raised {remote_type}: {remote_message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (
                self.service_name,
                self.method_name,
                self.remote_type,
                self.remote_message,
                self.remote_traceback,
            ),
        )


class OperatorError(SageError, RuntimeError):
    """A pipeline operator raised while processing a record; the job stops.

    ``record`` is the record it was given, or ``OperatorError.NO_RECORD`` when it failed
    outside a record (a source reading, ``setup()``, ``close()``); ``phase`` then says where.
    """

    NO_RECORD: Any = type("NoRecord", (), {"__repr__": lambda self: "<no record>"})()

    def __init__(
        self, operator: str, record: Any, cause: BaseException, *, phase: str = ""
    ) -> None:
        self.operator = operator
        self.record = record
        if record is OperatorError.NO_RECORD:
            where = f"in {phase}" if phase else "outside a record"
        else:
            text = repr(record)
            if len(text) > 200:
                text = text[:197] + "..."
            where = f"on record {text}"
        super().__init__(f"operator {operator!r} failed {where}: {type(cause).__name__}: {cause}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (rebuild_operator_error, (self.operator, self.record, str(self), self.__cause__))


def rebuild_operator_error(
    operator: str, record: Any, message: str, cause: BaseException | None
) -> OperatorError:
    """An ``OperatorError`` with its message as given (unpickling, and errors rebuilt from a
    Ray actor's report)."""
    err = OperatorError.__new__(OperatorError)
    Exception.__init__(err, message)
    err.operator, err.record = operator, record
    err.__cause__ = cause
    return err


class JobFailedError(SageError, RuntimeError):
    """Raised by ``Job.result()`` when a job ended in failure without an operator error."""


class JobCancelledError(SageError):
    """Raised inside operators (and by calls they make) when their job is being stopped."""
