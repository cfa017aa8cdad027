"""``BaseService``: a base class for services written the way SAGE writes them.

A service does not need a base class: any class, function or object with methods can be
registered. ``BaseService`` adds what SAGE's services rely on: ``self.ctx`` already set when
``__init__`` runs, ``self.name``, ``self.logger``, ``self.call_service(...)`` and
``self.call_service_async(...)``, and SAGE's lifecycle (see ``ServiceFactory``): ``setup()``,
``start_running()`` (or ``start()``) after it is built, ``stop()``, ``cleanup()`` (or
``close()``) and ``terminate()`` when it stops.
"""

from __future__ import annotations

from typing import Any

from .identity import ContextBound

__all__ = ["BaseService"]


class BaseService(ContextBound):
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
    _context_name = "name"
    _logger_prefix = "sage_nb.service"

    def _caller(self) -> Any:
        ctx = self.__dict__.get("ctx")
        if ctx is None:
            raise RuntimeError(
                f"{type(self).__name__} was not started by an environment, so it cannot call "
                f"services; register it (env.register_service(name, {type(self).__name__}))"
            )
        return ctx
