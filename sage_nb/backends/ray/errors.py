"""Errors of the Ray backend, and how Ray's own exceptions reach a caller as sage_nb's.

A caller of a service on Ray sees the same errors as with threads: ``ServiceCallError`` when the
service raised, ``ServiceTimeoutError``, ``ServiceNotFoundError`` and ``ServiceUnavailableError``
(an actor that died or is restarting). Two errors exist only here: a value Ray cannot serialize,
and a cluster that cannot be reached.

The text of Ray's own errors is long (a traceback per process it crossed); ``error_summary``
picks the line that tells, and ``start_error`` / ``swap_error`` say why a service's actors did
not start or take a new version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import SageError, ServiceCallError, ServiceUnavailableError
from ...runtime.messages import qualified_name

if TYPE_CHECKING:
    from .options import RayServiceOptions

__all__ = [
    "INSTALL_HINT",
    "RayConnectionError",
    "ServiceSerializationError",
    "error_summary",
    "last_line",
    "start_error",
    "swap_error",
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


def start_error(
    exc: BaseException, start_timeout: float, options: RayServiceOptions
) -> BaseException:
    """What a service whose actors did not start raises (``exc``: what Ray raised)."""
    from ray import exceptions as rex

    if isinstance(exc, rex.GetTimeoutError):
        return RuntimeError(
            f"its Ray actors did not start within {start_timeout:g} s; "
            f"does the cluster have the resources asked for (num_cpus={options.num_cpus},"
            f" num_gpus={options.num_gpus})?"
        )
    text = str(exc)
    if "No module named" in text:
        return RuntimeError(
            f"its Ray actor cannot import the code that defines it ({last_line(text)}); "
            f"define the service in the notebook or script, make its module importable on "
            f"the cluster (RemoteEnvironment(..., runtime_env={{'working_dir': '.'}})), or "
            f"call ray.cloudpickle.register_pickle_by_value(module)"
        )
    if isinstance(exc, rex.RayActorError):
        return RuntimeError(f"its Ray actor died while starting: {error_summary(text)}")
    return exc


def swap_error(exc: BaseException) -> BaseException:
    """The error a failed swap raises: the service's own when Ray reports it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    return exc


def last_line(text: str) -> str:
    """The last line of ``text`` that is not blank."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def error_summary(text: str) -> str:
    """The most telling line of a Ray error: the exception line of the innermost traceback."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if ":" in line and not line.startswith(("File ", "^", "~")):
            return line
    return lines[0] if lines else text
