"""``ContextBound``: what functions and services share once the runtime gave them a context.

SAGE's functions and services both have ``self.ctx``, a ``self.name`` read from it, a
``self.logger`` named after that, and ``self.call_service`` / ``self.call_service_async``
that go through it. ``BaseFunction`` and ``BaseService`` say where in their context each is.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .calls import ServiceCaller

__all__ = ["ContextBound"]


class ContextBound:
    """``ctx``, ``name``, ``logger`` and the service call helpers.

    Subclasses set ``_context_name`` (the context's attribute naming this instance),
    ``_logger_prefix`` and implement ``_caller()`` (what calls services for it).
    ``__init__`` takes any arguments and ignores them, so ``super().__init__(**kwargs)``
    works from any subclass.
    """

    ctx: Any = None
    _context_name = "name"
    _logger_prefix = "sage_nb"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    @property
    def name(self) -> str:
        """This instance's name: one assigned to it, else its context's (a function's
        ``<operator>_<index>``, a service's registered name), else the class name."""
        given = self.__dict__.get("_name")
        if given is not None:
            return str(given)
        ctx = self.__dict__.get("ctx")
        if ctx is not None:
            return str(getattr(ctx, self._context_name))
        return type(self).__name__

    @name.setter
    def name(self, value: str) -> None:
        self.__dict__["_name"] = value

    @property
    def logger(self) -> logging.Logger:
        """A ``logging.Logger`` named after ``name`` (assign one to use your own, as SAGE's
        programs do with a ``CustomLogger``)."""
        given = self.__dict__.get("_logger")
        if given is not None:
            return given  # type: ignore[no-any-return]
        return logging.getLogger(f"{self._logger_prefix}.{self.name}")

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
        """Call service ``name`` and wait for the result (see ``ProxyManager.call_service``)."""
        return self._caller().call_service(name, *args, timeout=timeout, method=method, **kwargs)

    def call_service_async(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        method: str | None = None,
        **kwargs: Any,
    ) -> Future[Any]:
        """Call service ``name`` without waiting; returns an awaitable ``ServiceFuture``."""
        return self._caller().call_service_async(
            name, *args, timeout=timeout, method=method, **kwargs
        )

    def _caller(self) -> ServiceCaller:
        raise NotImplementedError
