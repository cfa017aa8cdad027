"""``ServiceCaller``: what functions and services call services through.

The runtime's ``ProxyManager`` implements it; the bottom layer only needs its shape.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Protocol

__all__ = ["ServiceCaller"]


class ServiceCaller(Protocol):
    """``call_service`` and ``call_service_async`` on behalf of one caller."""

    def call_service(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        method: str | None = None,
        **kwargs: Any,
    ) -> Any: ...

    def call_service_async(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        method: str | None = None,
        **kwargs: Any,
    ) -> Future[Any]: ...
