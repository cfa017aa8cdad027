"""SAGE's module paths, answered by sage_nb in this process: an import hook.

SAGE programs import from SAGE's modules (``from sage.kernel.api.local_environment import
LocalEnvironment``, ``from sage.foundation import MapFunction``). ``install()`` puts an
``AliasFinder`` first on ``sys.meta_path``, which then answers every ``sage*`` import::

    import sage.kernel.api.datastream
      AliasFinder.find_spec    a path of SAGE_MODULES: a spec whose loader is the finder;
                               any other sage.* path: ModuleNotFoundError naming it
      AliasFinder.exec_module  a module with __all__, __doc__ and __path__ = [] (its
                               submodules come back here); each name is looked up in
                               sage_nb.compat on first use (module __getattr__)

Importing sage_nb or sage_nb.compat installs nothing; ``python -m sage_nb.compat program.py``
calls ``install()``. Where a real ``sage`` is importable (SAGE, or SageMath: same name) it
refuses unless ``force=True``; forced, it takes that package's modules out of ``sys.modules``
(objects already taken from them stay what they are) and ``uninstall()`` puts them back.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["COMPAT_MODULE", "SAGE_MODULES", "AliasFinder", "install", "installed", "uninstall"]

#: The module whose names the aliases hand out (tests point it at a made-up module).
COMPAT_MODULE = "sage_nb.compat"
#: Where a user reads what sage_nb.compat provides.
DOCS = "docs/sage-compat.md"

#: 0.2.x's one module per function class, found under each package in _FUNCTION_PACKAGES.
_FUNCTION_MODULES = {
    "base_function": ("BaseFunction",),
    "map_function": ("MapFunction",),
    "filter_function": ("FilterFunction",),
    "flatmap_function": ("FlatMapFunction",),
    "sink_function": ("SinkFunction",),
    "source_function": ("SourceFunction",),
    "batch_function": ("BatchFunction",),
    "keyby_function": ("KeyByFunction",),
    "comap_function": ("BaseCoMapFunction",),
    "join_function": ("BaseJoinFunction",),
    "future_function": ("FutureFunction",),
    "lambda_function": ("wrap_lambda",),
    "flatmap_collector": ("Collector",),
}
_FUNCTION_PACKAGE = tuple(name for names in _FUNCTION_MODULES.values() for name in names)
_FUNCTIONS = tuple(name for name in _FUNCTION_PACKAGE if name.endswith("Function"))
_FUNCTION_PACKAGES = (
    "sage.common.core.functions",
    "sage.kernel.api.function",
    "sage.core.api.function",
)

#: The hook's own names, which sage_nb.compat exports but no SAGE module has.
_HOOK_NAMES = frozenset({"install", "installed", "uninstall"})

#: Each SAGE module path sage_nb stands in for, with the names it provides (``None``: every
#: name in sage_nb.compat's ``__all__`` but ``_HOOK_NAMES``). Every parent of a path is a path
#: too.
SAGE_MODULES: dict[str, tuple[str, ...] | None] = {
    "sage": None,
    # 0.3.x
    "sage.runtime": (
        "LocalEnvironment",
        "FlowNetEnvironment",
        "BaseService",
        "StopSignal",
        "Packet",
    ),
    "sage.foundation": (
        *_FUNCTION_PACKAGE,
        "CoMapFunction",
        "JoinFunction",
        "PrintSink",
        "CustomLogger",
    ),
    "sage.stream": ("DataStream", "ConnectedStreams"),
    # 0.2.x
    "sage.core": (),
    "sage.core.api": (
        "LocalEnvironment",
        "RemoteEnvironment",
        "DataStream",
        "ConnectedStreams",
        "BaseService",
        *_FUNCTIONS,
    ),
    "sage.core.api.function": _FUNCTION_PACKAGE,
    "sage.core.api.local_environment": ("LocalEnvironment",),
    "sage.core.api.remote_environment": ("RemoteEnvironment",),
    "sage.core.api.datastream": ("DataStream",),
    "sage.core.api.connected_streams": ("ConnectedStreams",),
    "sage.core.api.service": ("BaseService",),
    "sage.core.api.service.base_service": ("BaseService",),
    "sage.kernel": (),
    "sage.kernel.api": (
        "LocalEnvironment",
        "RemoteEnvironment",
        "FlownetEnvironment",
        "DataStream",
        "ConnectedStreams",
    ),
    "sage.kernel.api.local_environment": ("LocalEnvironment",),
    "sage.kernel.api.remote_environment": ("RemoteEnvironment",),
    "sage.kernel.api.flownet_environment": ("FlownetEnvironment", "FlowNetEnvironment"),
    "sage.kernel.api.datastream": ("DataStream",),
    "sage.kernel.api.connected_streams": ("ConnectedStreams",),
    "sage.kernel.api.service": ("BaseService",),
    "sage.kernel.api.service.base_service": ("BaseService",),
    "sage.kernel.api.function": _FUNCTION_PACKAGE,
    "sage.kernel.runtime": (),
    "sage.kernel.runtime.communication": (),
    "sage.kernel.runtime.communication.packet": ("StopSignal", "Packet"),
    "sage.kernel.utils": (),
    "sage.kernel.utils.ray": (),
    "sage.kernel.utils.ray.ray_utils": ("ensure_ray_initialized",),
    "sage.common": (),
    "sage.common.core": (*_FUNCTION_PACKAGE, "StopSignal"),
    "sage.common.core.functions": _FUNCTION_PACKAGE,
    "sage.common.core.signals": ("StopSignal",),
    "sage.common.components": (),
    "sage.common.components.debug": ("PrintSink",),
    "sage.common.components.debug.print_sink": ("PrintSink",),
    "sage.common.service": ("BaseService",),
    "sage.common.service.base_service": ("BaseService",),
    "sage.common.utils": (),
    "sage.common.utils.logging": ("CustomLogger", "get_logger"),
    "sage.common.utils.logging.custom_logger": ("CustomLogger",),
    "sage.platform": (),
    "sage.platform.service": ("BaseService",),
    "sage.platform.service.base_service": ("BaseService",),
    **{
        f"{package}.{module}": names
        for package in _FUNCTION_PACKAGES
        for module, names in _FUNCTION_MODULES.items()
    },
}


def _is_sage(fullname: str) -> bool:
    return fullname == "sage" or fullname.startswith("sage.")


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds and loads the paths of ``SAGE_MODULES``; refuses every other ``sage.*`` path.

    One instance lives at the front of ``sys.meta_path`` while ``installed()``.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not _is_sage(fullname):
            return None
        if fullname in SAGE_MODULES:
            # A package (empty __path__) each, so that any submodule comes to this finder.
            origin = f"sage_nb's stand-in, from {COMPAT_MODULE}"
            return importlib.machinery.ModuleSpec(fullname, self, origin=origin, is_package=True)
        msg = (
            f"No module named {fullname!r}: sage_nb.compat does not provide it (sage_nb stands "
            f"in for the SAGE modules in sage_nb.compat.aliases.SAGE_MODULES; see {DOCS})"
        )
        raise ModuleNotFoundError(msg, name=fullname)

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        compat = importlib.import_module(COMPAT_MODULE)
        names = SAGE_MODULES[name]
        if names is None:
            names = tuple(n for n in compat.__all__ if n not in _HOOK_NAMES)
        shown = ", ".join(names) if names else "no names of its own, only submodules"
        vars(module).update(
            __doc__=(
                f"sage_nb's stand-in for SAGE's module ``{name}``: {shown}; taken from "
                f"{compat.__name__} (installed by sage_nb.compat.aliases.install())."
            ),
            __all__=list(names),
            __getattr__=_lookup(module, compat, names),
            __dir__=lambda: sorted({*vars(module), *names}),
        )


def _lookup(module: ModuleType, compat: ModuleType, names: tuple[str, ...]) -> Any:
    """The module ``__getattr__`` of an alias: a listed name comes from ``compat`` (and stays)."""
    listed = frozenset(names)

    def __getattr__(attr: str) -> Any:
        if attr not in listed:
            raise AttributeError(f"module {module.__name__!r} has no attribute {attr!r}")
        try:
            value = getattr(compat, attr)
        except AttributeError:
            # ImportError, not AttributeError: ``from m import X`` would replace the latter by
            # a bare "cannot import name", and this says what is missing where.
            msg = (
                f"cannot import name {attr!r} from {module.__name__!r}: {compat.__name__} does "
                f"not provide it yet, though SAGE's {module.__name__} does; see {DOCS}"
            )
            raise ImportError(msg, name=module.__name__) from None
        setattr(module, attr, value)
        return value

    return __getattr__


_FINDER = AliasFinder()
#: Modules of a real ``sage`` that install(force=True) took out of sys.modules.
_displaced: dict[str, ModuleType] = {}


def installed() -> bool:
    """Whether SAGE's module paths resolve to sage_nb in this process.

    Returns
    -------
    bool
        ``True`` between ``install()`` and ``uninstall()``.

    Examples
    --------
    >>> from sage_nb.compat import aliases
    >>> aliases.installed()
    False
    """
    return _FINDER in sys.meta_path


def _real_sage() -> str | None:
    """Where a ``sage`` that is not ours is importable from, or ``None``."""
    module = sys.modules.get("sage")  # not ours: install() returns early once installed
    if module is not None:
        return str(getattr(module, "__file__", None) or "an imported 'sage' module")
    try:
        spec = importlib.util.find_spec("sage")
    except (ImportError, ValueError) as exc:  # a broken "sage" is still in the way
        return f"a 'sage' that fails to import: {exc}"
    if spec is None:
        return None
    return spec.origin or ", ".join(spec.submodule_search_locations or ()) or "sage"


def install(*, force: bool = False) -> None:
    """Make SAGE's module paths (``SAGE_MODULES``) resolve to sage_nb in this process.

    Idempotent. Only ``sage`` and ``sage.*`` imports change: each path of ``SAGE_MODULES``
    gives a module with the names listed for it; any other ``sage.*`` path raises
    ``ModuleNotFoundError`` naming it.

    Parameters
    ----------
    force : bool
        Install even where a real ``sage`` package is importable: its modules leave
        ``sys.modules`` (``uninstall()`` restores them) and sage_nb's take precedence.

    Raises
    ------
    RuntimeError
        A real ``sage`` package (SAGE, or SageMath) is importable and ``force`` is false.

    Examples
    --------
    >>> from sage_nb.compat import aliases
    >>> aliases.install()
    >>> from sage.kernel.api.local_environment import LocalEnvironment
    >>> aliases.uninstall()
    """
    if installed():
        return
    where = _real_sage()
    if where is not None and not force:
        msg = (
            f"a real 'sage' package is importable here ({where}): SAGE itself, or SageMath, "
            f"which uses the same name; sage_nb's aliases would hide it in this process. Run "
            f"the program where that package is not installed, or pass force=True "
            f"(python -m sage_nb.compat --force program.py) to let sage_nb take precedence"
        )
        raise RuntimeError(msg)
    for name in [n for n in sys.modules if _is_sage(n)]:
        _displaced[name] = sys.modules.pop(name)
    sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Undo ``install()``: remove the finder and the alias modules, restore what it displaced.

    Does nothing when not installed. Objects already taken from alias modules keep working.

    Examples
    --------
    >>> from sage_nb.compat import aliases
    >>> aliases.install()
    >>> aliases.uninstall()
    >>> aliases.installed()
    False
    """
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in [n for n, m in sys.modules.items() if getattr(m, "__loader__", None) is _FINDER]:
        del sys.modules[name]
    sys.modules.update(_displaced)
    _displaced.clear()
