"""``sage_nb.compat``: SAGE's public names with SAGE's semantics, so SAGE programs run here.

Import from here instead of SAGE's modules, or run a program unchanged::

    python -m sage_nb.compat program.py [args]     # SAGE's imports resolve to sage_nb

``install()`` does the same in a running process (``%load_ext sage_nb.compat`` in a notebook):
``sage.runtime``, ``sage.foundation``, ``sage.core.api``, ``sage.kernel.api.*``, ... then
resolve here, in this process only. What differs from sage_nb's own API, and why, is in
``docs/sage-compat.md``: the environments here default to SAGE's behaviour (a ``submit()``
that returns at once, paced sources, a map's ``None`` dropped, a failing record logged and the
job going on, ``.print()`` showing the first record); sage_nb's own keep theirs.

Examples
--------
>>> from sage_nb.compat import LocalEnvironment, MapFunction, SinkFunction
>>> class Double(MapFunction):
...     def execute(self, data):
...         return None if data == 2 else data * 2   # a None is dropped, as in SAGE
>>> class Collect(SinkFunction):
...     def __init__(self, out, **kwargs):
...         super().__init__(**kwargs)
...         self.out = out
...     def execute(self, data):
...         self.out.append(data)
>>> seen = []
>>> env = LocalEnvironment("doc")
>>> _ = env.from_batch([1, 2, 3], delay=0).map(Double).sink(Collect, seen)
>>> job = env.submit(autostop=True)
>>> seen
[2, 6]
>>> env.close()
True
"""

from __future__ import annotations

from typing import Any

from ..api.datastream import ConnectedStreams, DataStream, PrintSink
from ..core.functions import (
    BaseFunction,
    BatchFunction,
    CoMapFunction,
    FilterFunction,
    JoinFunction,
    KeyByFunction,
    MapFunction,
    SinkFunction,
    SourceFunction,
    StopSignal,
)
from ..core.semantics import SAGE_SEMANTICS
from ..core.services import BaseService
from .custom_logger import CustomLogger, get_logger
from .environments import LocalEnvironment
from .functions import Collector, FlatMapFunction, FutureFunction, Packet, wrap_lambda

#: SAGE's names for the connected-stream function bases.
BaseCoMapFunction = CoMapFunction
BaseJoinFunction = JoinFunction

__all__ = [
    "SAGE_SEMANTICS",
    "BaseCoMapFunction",
    "BaseFunction",
    "BaseJoinFunction",
    "BaseService",
    "BatchFunction",
    "CoMapFunction",
    "Collector",
    "ConnectedStreams",
    "CustomLogger",
    "DataStream",
    "FilterFunction",
    "FlatMapFunction",
    "FlowNetEnvironment",
    "FlownetEnvironment",
    "FutureFunction",
    "JoinFunction",
    "KeyByFunction",
    "LocalEnvironment",
    "MapFunction",
    "Packet",
    "PrintSink",
    "RemoteEnvironment",
    "SinkFunction",
    "SourceFunction",
    "StopSignal",
    "ensure_ray_initialized",
    "get_logger",
    "install",
    "installed",
    "uninstall",
    "wrap_lambda",
]

_REMOTE = ("RemoteEnvironment", "FlowNetEnvironment", "FlownetEnvironment")


def __getattr__(name: str) -> Any:
    # The remote environments, and the import hook, load on first use: importing
    # sage_nb.compat imports neither ray nor anything that changes how imports resolve.
    if name in _REMOTE:
        from .environments import remote_environment_class

        return remote_environment_class(name)
    if name in ("install", "uninstall", "installed"):
        from . import aliases

        return getattr(aliases, name)
    raise AttributeError(f"module 'sage_nb.compat' has no attribute {name!r}")


def ensure_ray_initialized(runtime_env: dict[str, Any] | None = None) -> None:
    """Connect this process to Ray (a local cluster unless one runs here), as SAGE's helper
    does; needs ``pip install "sage_nb[ray]"``."""
    from ..backends.ray.cluster import connect

    if runtime_env:
        connect(None, runtime_env=runtime_env)
    else:
        connect(None)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext sage_nb.compat``: sage_nb's extension, and SAGE's imports resolve here."""
    from ..core.version import __version__
    from ..notebook.kernel import load
    from . import aliases

    runtime = load(ipython)
    aliases.install()
    print(
        f"sage_nb {__version__}: sage_env ready ({runtime.env.backend} backend); SAGE's imports "
        f"(sage.runtime, sage.core.api, ...) resolve to sage_nb.compat"
    )


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext sage_nb.compat``: SAGE's imports stop resolving here; sage_nb unloads."""
    from ..notebook.kernel import unload
    from . import aliases

    aliases.uninstall()
    unload(ipython)
