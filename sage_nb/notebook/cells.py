"""``%%sage_service`` cells: from a cell's source to a running service.

``factory_from_cell`` checks the magic's line, finds the one class (or else the one function)
the cell defines, runs the cell in the notebook's namespace with the cell's own line numbers,
and returns a ``ServiceFactory``; ``deploy`` registers it (swapping a previous version in
place, or putting it back if the new one cannot start) and says what happened. Tracebacks of
a service's errors start at the user's code: ``user_frames`` drops the runtime's frames.
"""

from __future__ import annotations

import ast
import inspect
import math
import os
import sys
import types
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..errors import ServiceUnavailableError
from ..runtime.retry import RetryPolicy
from ..runtime.service.service_factory import ServiceFactory, ServiceOptions
from .display import plural

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["deploy", "factory_from_cell", "user_frames"]

#: Method names a service cell may not pick with --method: lifecycle hooks and helpers.
_RESERVED_METHODS = frozenset({"setup", "close", "health", "call_service", "call_service_async"})

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_frames(tb: TracebackType | None) -> TracebackType | None:
    """Drop the runtime's frames at the head of a service's traceback (its worker loop)."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return tb


def factory_from_cell(
    shell: Any, env: Any, args: Any, cell: str
) -> tuple[ServiceFactory, ServiceFactory | None]:
    """The service a ``%%sage_service`` cell defines, and the version it replaces (if any).

    ``args`` is the magic's parsed line. Runs the cell in ``shell.user_ns``, so what it
    defines stays in the notebook; a mistake in the line or in what the cell defines raises
    ``UsageError`` before anything runs.
    """
    name = args.name
    if not name.isidentifier():
        raise UsageError(f"service name {name!r} is not an identifier; try %%sage_service profile")
    if args.concurrency < 1:
        raise UsageError(
            f"--concurrency must be 1 or more, got {args.concurrency}; "
            f"e.g. %%sage_service {name} --concurrency 4"
        )
    for flag, value in (("--retries", args.retries), ("--max-restarts", args.max_restarts)):
        if value < 0:
            raise UsageError(f"{flag} must be 0 or more, got {value}")
    backend_options = _backend_options(args, getattr(env, "backend", None))
    method = args.method
    if not method.isidentifier() or method.startswith("_") or method in _RESERVED_METHODS:
        raise UsageError(
            f"--method {method!r} cannot be called: name a public method of the service, "
            f"e.g. --method lookup"
        )
    target_name, is_class = _service_definition(shell, cell)
    existing = env.service_factory(name) if name in env.services else None
    if existing is not None and existing.origin != "cell" and not args.replace:
        raise UsageError(
            f"service {name!r} was registered from code; add --replace to take it over: "
            f"%%sage_service {name} --replace"
        )
    exec(_compile_cell(shell, cell), shell.user_ns)
    target = shell.user_ns[target_name]
    spec: Any
    if is_class:
        if method != "process":
            if not callable(getattr(target, method, None)):
                raise UsageError(
                    f"class {target_name} has no method {method!r} for --method; "
                    f"define def {method}(self, ...) in it or drop --method"
                )
            spec = _with_method(target, method)
        else:
            spec = target
    else:
        spec = _FunctionAsService(target, method)
    try:
        options = ServiceOptions(
            concurrency=args.concurrency,
            max_queued=args.max_queued,
            overflow=args.overflow,
            retry=RetryPolicy(retries=args.retries) if args.retries else None,
            max_restarts=args.max_restarts,
            backend=backend_options,
        )
        factory = ServiceFactory(name, spec, options=options, origin="cell")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return factory, existing


def _backend_options(args: Any, backend: str | None) -> dict[str, Any] | None:
    """The Ray options of a ``%%sage_service`` line (None on threads), checked."""
    ray_flags = [
        flag
        for flag, given in (
            ("--replicas", args.replicas != 1),
            ("--num-cpus", args.num_cpus is not None),
            ("--num-gpus", args.num_gpus is not None),
        )
        if given
    ]
    if backend != "ray":
        if ray_flags:
            raise UsageError(
                f"{', '.join(ray_flags)} only apply to Ray actors; this environment runs "
                f"services on threads (%sage_env --backend ray switches)"
            )
        return None
    if args.replicas < 1:
        raise UsageError(f"--replicas must be 1 or more, got {args.replicas}")
    for flag, value in (("--num-cpus", args.num_cpus), ("--num-gpus", args.num_gpus)):
        if value is not None and not 0 <= value < math.inf:
            raise UsageError(f"{flag} must be a number >= 0, got {value:g}")
    from ..backends.ray.options import RayServiceOptions

    return RayServiceOptions(
        num_replicas=args.replicas, num_cpus=args.num_cpus, num_gpus=args.num_gpus
    ).as_dict()


def _service_definition(shell: Any, cell: str) -> tuple[str, bool]:
    """The name of the one class (or else the one function) the cell defines."""
    try:
        tree = ast.parse(shell.transform_cell(cell))
    except SyntaxError:
        _compile_cell(shell, cell)  # raises the SyntaxError, with the cell's line numbers
        raise AssertionError("unreachable") from None  # pragma: no cover
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    funcs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if len(classes) == 1:
        return classes[0], True
    if len(classes) > 1:
        raise UsageError(
            f"the cell defines {len(classes)} classes ({', '.join(classes)}); a "
            f"%%sage_service cell defines exactly one service class: move the others to "
            f"an earlier cell"
        )
    if len(funcs) == 1:
        return funcs[0], False
    if funcs:
        raise UsageError(
            f"the cell defines {len(funcs)} functions ({', '.join(funcs)}) and no class; "
            f"define one class, or one function that becomes the service's process"
        )
    raise UsageError(
        "the cell defines no class or function; write a class with a process(self, ...) "
        "method, or a function"
    )


def _compile_cell(shell: Any, cell: str) -> types.CodeType:
    """The cell's code, cached like a cell's so that tracebacks show its lines; line numbers
    match the cell's: line 1 is the ``%%sage_service`` line."""
    source = "\n" + shell.transform_cell(cell)
    filename = shell.compile.cache(source, shell.execution_count, raw_code=source)
    return compile(source, filename, "exec", dont_inherit=True)


def _with_method(cls: type, method: str) -> type:
    """A subclass of ``cls`` whose ``process`` is ``cls.method`` (plain calls run it)."""
    attr = inspect.getattr_static(cls, method)

    def body(ns: dict[str, Any]) -> None:
        ns.update(
            process=attr,
            __module__=cls.__module__,
            __qualname__=cls.__qualname__,
            __doc__=cls.__doc__,
        )

    return types.new_class(cls.__name__, (cls,), exec_body=body)


class _FunctionAsService:
    """A cell function as a service: callable as ``process`` and under its ``--method`` name."""

    def __init__(self, fn: Any, method: str) -> None:
        self.process = fn
        if method != "process":
            setattr(self, method, fn)

    def __repr__(self) -> str:
        return f"<service function {getattr(self.process, '__qualname__', self.process)!r}>"


def deploy(env: Any, factory: ServiceFactory, existing: ServiceFactory | None) -> None:
    """Register ``factory`` in ``env`` and start it, replacing ``existing``; print the outcome.

    If the new version fails to build, the running one keeps serving; if it fails to start,
    the previous registration comes back (or none). Either way the user's exception is
    raised, its traceback starting at the user's code.
    """
    name = factory.name
    workers = plural(factory.options.concurrency, "worker")
    replicas = (factory.options.backend or {}).get("num_replicas", 1)
    if replicas > 1:
        workers = f"{plural(replicas, 'replica')}, {workers} each"
    ctx = env.service_contexts().get(name)
    running = ctx is not None and ctx.accepting
    queued = len(ctx.pending) if ctx is not None else 0
    try:
        outcome = env.register_factory(factory, replace=existing is not None)
    except Exception as exc:
        if running:
            print(
                f"service {name!r}: the new version failed to start; the running version "
                f"keeps serving",
                file=sys.stderr,
            )
        raise exc.with_traceback(user_frames(exc.__traceback__)) from exc.__cause__
    try:
        env.start_service(name)
    except ServiceUnavailableError as exc:
        if existing is None:
            env.unregister_service(name)
        else:
            env.register_factory(existing, replace=True)
        error = exc.__cause__ or exc
        raise error.with_traceback(user_frames(error.__traceback__)) from None
    if running and outcome == "restarted":
        answered = f"; {plural(queued, 'queued request')} answered first" if queued else ""
        print(f"✓ service {name!r} restarted with its new options ({workers}){answered}")
    elif running:
        version = ctx.task.statistics().version if ctx and ctx.task else "?"
        handed = f"; {plural(queued, 'queued request')} handed over" if queued else ""
        print(f"✓ service {name!r} updated to version {version} ({workers}){handed}")
    else:
        print(f"✓ service {name!r} ready ({workers})")
