"""SAGE's environments: sage_nb's, built and run with SAGE's semantics.

``LocalEnvironment`` runs on threads like sage_nb's, with ``SAGE_SEMANTICS`` (a ``submit()``
that returns at once, paced sources, a map's ``None`` dropped, a failing record logged, record
at a time, ``.print()`` showing the first record) and SAGE's service lifecycle. The remote
ones (``RemoteEnvironment`` of SAGE 0.2, ``FlownetEnvironment`` / ``FlowNetEnvironment``) run
the same program on sage_nb's Ray backend; ray is imported when one is created.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ..api.environment import LocalEnvironment as _LocalEnvironment
from ..core.logs import set_console_level
from ..core.semantics import SAGE_SEMANTICS, Semantics

__all__ = ["LocalEnvironment", "SageEnvironmentMixin", "remote_environment_class"]

log = logging.getLogger(__name__)

#: Where SAGE's remote environments run: on Ray, records move in batches (SAGE guarantees
#: record-at-a-time order only in its local execution).
REMOTE_SEMANTICS: Semantics = dataclasses.replace(SAGE_SEMANTICS, record_at_a_time=False)

_SAGE_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SageEnvironmentMixin:
    """What SAGE's environments add to sage_nb's: ``config``, ``console_log_level``,
    ``register_service_factory``, and SAGE's checks."""

    semantics = SAGE_SEMANTICS
    lifecycle = "sage"
    config: dict[str, Any]
    console_log_level: str

    def _sage_init(self, config: dict[str, Any] | None, ignored: dict[str, Any]) -> None:
        self.config = dict(config or {})
        self.console_log_level = "INFO"
        given = sorted(k for k, v in ignored.items() if v not in (None, False))
        if given:
            log.debug("sage_nb.compat ignores %s (SAGE options sage_nb does not need)", given)

    def set_console_log_level(self, level: str | int) -> None:
        """SAGE's levels: "DEBUG", "INFO", "WARNING" or "ERROR" (any case)."""
        if not isinstance(level, str) or level.upper() not in _SAGE_LEVELS:
            raise ValueError(f"Invalid log level: {level!r}; use one of {', '.join(_SAGE_LEVELS)}")
        self.console_log_level = level.upper()
        set_console_level(level.upper())

    def register_service_factory(self, service_name: str, service_factory: Any) -> Any:
        """Register a service from a SAGE ``ServiceFactory``-like object (``service_class``,
        ``service_args``, ``service_kwargs``) or a sage_nb ``ServiceFactory``."""
        target = getattr(service_factory, "service_class", None)
        if target is None:
            target = getattr(service_factory, "target", None)
        if target is None:
            raise TypeError(
                f"register_service_factory needs a factory with service_class, got "
                f"{type(service_factory).__name__}"
            )
        args = getattr(service_factory, "service_args", None) or getattr(
            service_factory, "args", ()
        )
        kwargs = getattr(service_factory, "service_kwargs", None) or getattr(
            service_factory, "kwargs", None
        )
        add_service = self.add_service  # type: ignore[attr-defined]
        add_service(service_name, target, tuple(args or ()), dict(kwargs or {}))
        return service_factory


class LocalEnvironment(SageEnvironmentMixin, _LocalEnvironment):
    """SAGE's ``LocalEnvironment(name, config=None)`` on sage_nb's threads.

    ``submit()`` returns at once (SAGE's default); ``submit(autostop=True)`` runs a finite job
    to the end, closes its sinks and services, and returns. A script that ends right after a
    non-blocking ``submit()`` of a finite job still prints its output: the interpreter waits
    for the job at exit.
    """

    def __init__(
        self,
        name: str = "localenvironment",
        config: dict[str, Any] | None = None,
        *,
        scheduler: Any = None,
        enable_monitoring: bool = False,
        platform: str = "local",
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self._sage_init(config, {"scheduler": scheduler, "enable_monitoring": enable_monitoring})
        self.platform = platform


_remote_classes: dict[str, type] = {}


def remote_environment_class(kind: str) -> type:
    """SAGE's remote environment ``kind`` ("RemoteEnvironment", "FlowNetEnvironment",
    "FlownetEnvironment") as a class on sage_nb's Ray backend (imported here, on first use)."""
    found = _remote_classes.get(kind)
    if found is not None:
        return found
    from ..backends.ray.environment import RemoteEnvironment as _RemoteEnvironment

    class _SageRemote(SageEnvironmentMixin, _RemoteEnvironment):
        semantics = REMOTE_SEMANTICS

        def __init__(
            self,
            name: str = kind.lower().replace("environment", "_environment"),
            config: dict[str, Any] | None = None,
            host: str | None = None,
            port: int | None = None,
            scheduler: Any = None,
            extra_python_paths: list[str] | None = None,
            placement_policy: Any = None,
            enable_monitoring: bool = False,
            *,
            address: str | None = None,
            **options: Any,
        ) -> None:
            super().__init__(name, address, **options)
            self._sage_init(
                config,
                {
                    "host": host,
                    "port": port,
                    "scheduler": scheduler,
                    "extra_python_paths": extra_python_paths,
                    "placement_policy": placement_policy,
                    "enable_monitoring": enable_monitoring,
                },
            )

    _SageRemote.__name__ = _SageRemote.__qualname__ = kind
    _SageRemote.__doc__ = (
        f"SAGE's ``{kind}`` on sage_nb's Ray backend: services and parallel operators run as "
        f"Ray actors. ``host``/``port`` (SAGE's JobManager daemon) are not needed and ignored; "
        f"``address=`` picks a Ray cluster (None: a local one)."
    )
    _remote_classes[kind] = _SageRemote
    return _SageRemote
