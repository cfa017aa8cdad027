"""Errors of the Ray backend, and how Ray's own exceptions reach a caller as sage_nb's.

A caller of a service on Ray sees the same errors as with threads: ``ServiceCallError`` when the
service raised, ``ServiceTimeoutError``, ``ServiceNotFoundError`` and ``ServiceUnavailableError``
(an actor that died or is restarting). Two errors exist only here: a value Ray cannot serialize,
and a cluster that cannot be reached.
"""

from __future__ import annotations

from typing import Any

from ...errors import SageError, ServiceCallError, ServiceUnavailableError
from ...runtime.messages import qualified_name

__all__ = [
    "INSTALL_HINT",
    "RayConnectionError",
    "ServiceSerializationError",
    "translate_ray_error",
]

#: How to get the Ray backend's dependencies.
INSTALL_HINT = 'pip install "sage_nb[ray]"'


class RayConnectionError(SageError, ConnectionError):
    """``RemoteEnvironment`` could not reach or start a Ray cluster."""


class ServiceSerializationError(SageError, TypeError):
    """A call's arguments or its result cannot be serialized to cross into or out of Ray.

    Attributes
    ----------
    service_name, method_name:
        What was called.
    what:
        ``"arguments"`` or ``"result"``.
    type_name:
        Qualified name of the type that could not be serialized.
    """

    def __init__(self, service: str, method: str, what: str, type_name: str, detail: str) -> None:
        self.service_name = service
        self.method_name = method
        self.what = what
        self.type_name = type_name
        self.detail = detail
        if what == "arguments":
            msg = (
                f"cannot send the arguments of {service}.{method} to Ray: {type_name} cannot be "
                f"serialized ({detail}); pass plain data, or an object that pickles"
            )
        else:
            msg = (
                f"cannot return the result of {service}.{method} from Ray: {type_name} cannot be "
                f"serialized ({detail}); return plain data, or an object that pickles"
            )
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.service_name, self.method_name, self.what, self.type_name, self.detail)
        return (type(self), args)


def translate_ray_error(exc: BaseException, service: str, method: str) -> BaseException:
    """The sage_nb error a caller raises for a Ray exception from a call to ``service``."""
    from ray import exceptions as rex

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (rex.ActorUnavailableError, rex.ActorDiedError, rex.RayActorError)):
        died = isinstance(exc, rex.ActorDiedError)
        state = "died" if died else "is unavailable (restarting or unreachable)"
        hint = (
            "it is restarted if restarts are left (max_restarts); idempotent calls may be "
            "retried (register_service(..., retries=N) or max_task_retries=N)"
        )
        where = f"during {service}.{method}"
        return ServiceUnavailableError(
            f"service {service!r}: its Ray actor {state} {where}: {first}; {hint}"
        )
    if isinstance(
        exc,
        (rex.ObjectLostError, rex.TaskCancelledError, rex.WorkerCrashedError, rex.NodeDiedError),
    ):
        return ServiceUnavailableError(
            f"service {service!r}: the call {service}.{method} was lost in Ray ({first}); "
            f"it may be retried"
        )
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
        return ServiceCallError(
            service,
            method,
            qualified_name(type(cause)),
            str(cause),
            str(exc),
        )
    return ServiceUnavailableError(
        f"service {service!r}: Ray failed the call {service}.{method}: "
        f"{type(exc).__name__}: {first}"
    )
