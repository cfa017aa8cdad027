"""How the runtime makes threads: daemons named ``sage_nb/<kind>/<name>``, started in a copy of
their creator's ``contextvars`` context.

Inheriting the context is what routes output in a notebook: ipykernel keeps the header of the
cell being executed in a context variable, so a task thread started by ``%sage_submit`` prints
under that cell, even after later cells ran. (Python 3.14 does this for every thread; earlier
versions start threads with an empty context.)
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["make_thread"]


def make_thread(name: str, target: Callable[..., Any], *args: Any) -> threading.Thread:
    """A daemon thread named ``name`` that runs ``target(*args)`` in a copy of this context."""
    if not name.startswith("sage_nb/"):
        raise ValueError(f"runtime threads are named sage_nb/<kind>/<name>, got {name!r}")
    context = contextvars.copy_context()
    return threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)
