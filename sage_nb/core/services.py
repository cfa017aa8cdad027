"""``BaseService``: a base class for services written the way SAGE writes them.

A service does not need a base class: any class, function or object with methods can be
registered. ``BaseService`` adds what SAGE's services rely on: ``self.ctx`` already set when
``__init__`` runs, ``self.name``, ``self.logger``, ``self.call_service(...)`` and
``self.call_service_async(...)``, and SAGE's lifecycle (see ``ServiceFactory``): ``setup()``,
``start_running()`` (or ``start()``) after it is built, ``stop()``, ``cleanup()`` (or
``close()``) and ``terminate()`` when it stops.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["BaseService"]


class BaseService:
    """Base of services written SAGE's way.

    Examples
    --------
    >>> from sage_nb import BaseService, LocalEnvironment
    >>> class Greeter(BaseService):
    ...     def __init__(self, greeting):
    ...         super().__init__()
    ...         self.greeting = greeting
    ...         self.owner = self.ctx.name  # the context exists already
    ...     def process(self, who):
    ...         return f"{self.greeting}, {who} (from {self.name})"
    >>> with LocalEnvironment("doc") as env:
    ...     _ = env.register_service("greeter", Greeter, "hello")
    ...     env.call_service("greeter", "ada")
    'hello, ada (from greeter)'
    """

    #: A ``ServiceInstanceContext`` (``name``, ``call_service``, ``call_service_async``), set
    #: by the runtime before ``__init__`` runs; None for an instance built by hand.
    ctx: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    @property
    def name(self) -> str:
        given = self.__dict__.get("_name")
        if given is not None:
            return str(given)
        ctx = self.__dict__.get("ctx")
        return str(ctx.name) if ctx is not None else type(self).__name__

    @name.setter
    def name(self, value: str) -> None:
        self.__dict__["_name"] = value

    @property
    def logger(self) -> logging.Logger:
        given = self.__dict__.get("_logger")
        if given is not None:
            return given  # type: ignore[no-any-return]
        return logging.getLogger(f"sage_nb.service.{self.name}")

    @logger.setter
    def logger(self, value: Any) -> None:
        self.__dict__["_logger"] = value

    def call_service(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        method: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call service ``name`` and wait for its result (see ``ProxyManager.call_service``)."""
        return self._context().call_service(name, *args, timeout=timeout, method=method, **kwargs)

    def call_service_async(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        method: str | None = None,
        **kwargs: Any,
    ) -> Future[Any]:
        """Call service ``name`` without waiting; returns an awaitable ``ServiceFuture``."""
        return self._context().call_service_async(  # type: ignore[no-any-return]
            name, *args, timeout=timeout, method=method, **kwargs
        )

    def _context(self) -> Any:
        ctx = self.__dict__.get("ctx")
        if ctx is None:
            raise RuntimeError(
                f"{type(self).__name__} was not started by an environment, so it cannot call "
                f"services; register it (env.register_service(name, {type(self).__name__}))"
            )
        return ctx
