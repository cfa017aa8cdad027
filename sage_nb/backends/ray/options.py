"""Plain data the Ray backend passes around: a service's Ray options and what every actor of an
environment knows about the others."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...runtime.retry import RetryPolicy

__all__ = ["ActorConfig", "RayServiceOptions", "ServiceEntry"]


@dataclass(frozen=True)
class RayServiceOptions:
    """How one service runs on Ray (``RemoteEnvironment.register_service``'s Ray options).

    ``num_replicas`` actors serve the service behind its one name; each runs ``max_concurrency``
    requests at once (default: the service's ``concurrency``). ``num_cpus`` / ``num_gpus`` are
    Ray resource requests (None: Ray's default, one CPU to place an actor and none while it
    runs). A crashed actor is restarted up to the service's ``max_restarts`` times; Ray retries
    calls that were running in it ``max_task_retries`` times (-1: until the deadline), so set
    it only for idempotent methods.
    """

    num_replicas: int = 1
    num_cpus: float | None = None
    num_gpus: float | None = None
    max_task_retries: int = 0
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.num_replicas) or self.num_replicas < 1:
            raise ValueError(f"num_replicas must be an int >= 1, got {self.num_replicas!r}")
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value >= 0):
                raise ValueError(f"{name} must be a number >= 0 or None, got {value!r}")
        if not _is_int(self.max_task_retries) or self.max_task_retries < -1:
            raise ValueError(
                f"max_task_retries must be an int >= -1 (-1: retry until the deadline), "
                f"got {self.max_task_retries!r}"
            )
        if self.max_concurrency is not None and (
            not _is_int(self.max_concurrency) or self.max_concurrency < 1
        ):
            raise ValueError(f"max_concurrency must be an int >= 1, got {self.max_concurrency!r}")

    @classmethod
    def from_factory(cls, backend_options: Mapping[str, Any] | None) -> RayServiceOptions:
        return cls(**(backend_options or {}))

    def as_dict(self) -> dict[str, Any]:
        return {
            "num_replicas": self.num_replicas,
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "max_task_retries": self.max_task_retries,
            "max_concurrency": self.max_concurrency,
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ServiceEntry:
    """What a caller inside an actor needs to reach a service: its replica count and the
    default retry policy of its calls."""

    replicas: int = 1
    retry: RetryPolicy | None = None


@dataclass(frozen=True)
class ActorConfig:
    """Given to every actor of an environment: where its peers are and the call defaults.

    ``directory`` is a snapshot of the registered services when the actor was created; a
    service registered later is found by name on its first call.
    """

    environment: str
    namespace: str
    sync_timeout: float
    async_timeout: float
    directory: dict[str, ServiceEntry] = field(default_factory=dict)


def actor_name(service: str, replica: int) -> str:
    """The Ray actor name of one replica of ``service`` (in the environment's namespace)."""
    return f"{service}#{replica}"
