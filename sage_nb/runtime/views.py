"""Views attach here: ``env.graph()`` and ``job.graph()`` ask a registered view factory.

The runtime and the API never import the notebook layer. A layer that draws views registers
a factory per kind of view (``register_view("graph", GraphView)``); the notebook layer does so
when ``sage_nb.notebook.widgets`` is imported. Asking for a view of a kind nobody registered
imports ``DEFAULT_VIEWS`` first (the way a plotting backend is chosen by module name), so
``env.graph()`` works in a script too when ipywidgets is installed.

Examples
--------
>>> from sage_nb.runtime.views import register_view, make_view
>>> register_view("doc-example", lambda env, job=None: f"a view of {env}")
>>> make_view("doc-example", "env1")
'a view of env1'
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_VIEWS", "make_view", "register_view"]

#: The module that registers sage_nb's own views when imported.
DEFAULT_VIEWS = "sage_nb.notebook.widgets"

# Invariants: _factories changes under _lock; a factory is called without it.
_lock = threading.Lock()
_factories: dict[str, Callable[..., Any]] = {}


def register_view(kind: str, factory: Callable[..., Any]) -> None:
    """Make ``factory(env, job=None)`` the view of ``kind`` ("graph", ...); replaces any."""
    with _lock:
        _factories[kind] = factory


def make_view(kind: str, env: Any, job: Any = None) -> Any:
    """A view of ``kind`` for ``env`` (and ``job``): from the registered factory, importing
    ``DEFAULT_VIEWS`` first if none is. Raises ``ImportError`` with the install command when
    the default views cannot load."""
    with _lock:
        factory = _factories.get(kind)
    if factory is None:
        try:
            importlib.import_module(DEFAULT_VIEWS)
        except ImportError as exc:
            raise ImportError(
                f'views need the notebook extra ({exc}); pip install "sage_nb[notebook]"'
            ) from exc
        with _lock:
            factory = _factories.get(kind)
        if factory is None:
            raise LookupError(f"no view of kind {kind!r} is registered")
    return factory(env) if job is None else factory(env, job)
