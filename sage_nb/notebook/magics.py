"""IPython magics: a thin layer over ``sage_env`` (see ``kernel.py``).

Each magic's help (``%sage_submit?``) comes from its argument parser. A user mistake raises
``UsageError``: IPython shows it as one line, without a traceback.
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .. import __version__
from ..errors import ServiceNotFoundError, ServiceUnavailableError
from ..runtime.service.base_service_task import ServiceFactory
from .display import StatusReport, progress_line

if TYPE_CHECKING:
    from ..runtime.job_manager import Job
    from .kernel import KernelRuntime

__all__ = ["SageMagics"]

_MAGICS_HELP = """\
sage_nb {version}: pipelines that call services, in this kernel.

  %%sage_service NAME   a cell that defines a service class (or a function: its process)
  %sage_call NAME ARGS  call a service: %sage_call profile "42"
  %sage_submit          run sage_env's pipeline (--background to return at once)
  %sage_status          services, jobs, queue depths, threads
  %sage_stop [NAME]     stop running jobs, or service NAME (--all: everything)
  %sage_reset           close sage_env and start a fresh one
  %sage_env             show sage_env, or make a new one (--backend local|ray, NAME)

sage_env is the environment: sage_env.from_batch(data).map(fn).sink(print) builds the pipeline,
sage_env.call_service(...) and await sage_env.call_service_async(...) call services.
Help on one magic: %sage_submit?"""


class _ServiceWithMethod:
    """A service factory target whose plain calls (no ``method=``) run ``method``."""

    def __init__(self, target: Any, method: str) -> None:
        self.target = target
        self.method = method
        self.__qualname__ = getattr(target, "__qualname__", type(target).__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        instance = self.target(*args, **kwargs)
        chosen = getattr(instance, self.method, None)
        if not callable(chosen):
            raise AttributeError(f"{self.__qualname__} has no method {self.method!r}")
        instance.process = chosen
        return instance


class _FunctionAsService:
    """A cell function as a service: callable as ``process`` and under its ``--method`` name."""

    def __init__(self, fn: Any, method: str) -> None:
        self.process = fn
        if method != "process":
            setattr(self, method, fn)

    def __repr__(self) -> str:
        return f"<service function {getattr(self.process, '__qualname__', self.process)!r}>"


@magics_class
class SageMagics(Magics):
    """The ``%sage_*`` magics."""

    shell: Any  # the InteractiveShell; never None once registered

    def __init__(self, shell: Any, runtime: KernelRuntime) -> None:
        super().__init__(shell)
        self.runtime = runtime

    @property
    def env(self) -> Any:
        return self.runtime.env

    # -- help ------------------------------------------------------------------------------
    @line_magic
    def sage_nb(self, line: str = "") -> None:
        """Show what sage_nb's magics do."""
        print(_MAGICS_HELP.format(version=__version__))

    # -- %%sage_service --------------------------------------------------------------------
    @magic_arguments()
    @argument("name", help="the service name callers use, a Python identifier")
    @argument(
        "--method",
        "-m",
        default="process",
        help="the method plain calls run (default: process); a function cell is also "
        "callable under this name",
    )
    @argument("--concurrency", "-c", type=int, default=1, help="worker threads (default 1)")
    @argument(
        "--replace",
        action="store_true",
        help="take over a name registered from code (re-running this cell never needs it)",
    )
    @cell_magic
    def sage_service(self, line: str, cell: str) -> None:
        """Define a service in a cell: one class, or one function that becomes its process.

        The cell runs in the notebook's namespace, so it can use imports and names of earlier
        cells. Re-running the cell swaps the new version in place: it is built first (if its
        constructor or setup() raises, the old version keeps serving), then the old version
        finishes its current request and its close() runs; queued requests are answered by
        the new version.

        Example::

            %%sage_service profile
            class Profile:
                def setup(self):
                    self.db = {"42": {"age": 62}}
                def process(self, user_id):
                    return self.db.get(user_id, {})
        """
        args = parse_argstring(self.sage_service, line)
        name = args.name
        if not name.isidentifier():
            raise UsageError(
                f"service name {name!r} is not an identifier; try %%sage_service profile"
            )
        if args.concurrency < 1:
            raise UsageError(f"--concurrency must be 1 or more, got {args.concurrency}")
        target_name, is_class = self._service_definition(cell)
        dispatcher = self.env._dispatcher
        existing = dispatcher.factory(name) if name in dispatcher.names() else None
        if existing is not None and existing.origin != "cell" and not args.replace:
            raise UsageError(
                f"service {name!r} was registered from code; add --replace to take it over: "
                f"%%sage_service {name} --replace"
            )
        # Line numbers of tracebacks match the cell's: line 1 is the %%sage_service line.
        source = "\n" + self.shell.transform_cell(cell)
        filename = self.shell.compile.cache(source, self.shell.execution_count, raw_code=source)
        code = compile(source, filename, "exec", dont_inherit=True)
        exec(code, self.shell.user_ns)
        target = self.shell.user_ns[target_name]
        if is_class:
            spec: Any = (
                target if args.method == "process" else _ServiceWithMethod(target, args.method)
            )
        else:
            spec = _FunctionAsService(target, args.method)
        factory = ServiceFactory(name, spec, concurrency=args.concurrency, origin="cell")
        self._deploy(factory, existing)

    def _service_definition(self, cell: str) -> tuple[str, bool]:
        """The name of the one class (or else the one function) the cell defines."""
        try:
            tree = ast.parse(self.shell.transform_cell(cell))
        except SyntaxError:
            return self._run_for_syntax_error(cell)
        classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
        funcs = [
            n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
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

    def _run_for_syntax_error(self, cell: str) -> tuple[str, bool]:
        source = "\n" + self.shell.transform_cell(cell)
        filename = self.shell.compile.cache(source, self.shell.execution_count, raw_code=source)
        compile(source, filename, "exec", dont_inherit=True)  # raises the SyntaxError
        raise AssertionError("unreachable")  # pragma: no cover

    def _deploy(self, factory: ServiceFactory, existing: ServiceFactory | None) -> None:
        dispatcher = self.env._dispatcher
        name = factory.name
        workers = f"{factory.concurrency} worker{'s' if factory.concurrency != 1 else ''}"
        ctx = dispatcher.contexts().get(name)
        running = ctx is not None and ctx.accepting
        queued = len(ctx.pending) if ctx is not None else 0
        try:
            dispatcher.register(factory, replace=existing is not None)
        except Exception:
            if running:
                print(
                    f"service {name!r}: the new version failed to start; the running version "
                    f"keeps serving",
                    file=sys.stderr,
                )
            raise
        try:
            dispatcher.ensure_service(name)
        except ServiceUnavailableError as exc:
            if existing is None:
                dispatcher.unregister(name)
            else:
                dispatcher.register(existing, replace=True)
            raise (exc.__cause__ or exc) from None
        if running:
            version = ctx.task.statistics().version if ctx and ctx.task else "?"
            handed = (
                f"; {queued} queued request{'s' if queued != 1 else ''} handed over"
                if queued
                else ""
            )
            print(f"✓ service {name!r} updated to version {version} ({workers}){handed}")
        else:
            print(f"✓ service {name!r} ready ({workers})")

    # -- %sage_call ------------------------------------------------------------------------
    @line_magic
    def sage_call(self, line: str) -> Any:
        """Call a service and show its result: %sage_call [--method M] [--timeout S] NAME ARGS

        ARGS are Python expressions evaluated in the notebook's namespace, separated by commas
        or spaces; keyword arguments work too::

            %sage_call profile "42"
            %sage_call --method lookup profile user_id, fields=["age"]
        """
        method, timeout, name, rest = _split_call_line(line)
        call_args, call_kwargs = self._evaluate_arguments(rest)
        try:
            return self.env.call_service(
                name, *call_args, timeout=timeout, method=method, **call_kwargs
            )
        except ServiceNotFoundError as exc:
            raise UsageError(str(exc)) from None

    def _evaluate_arguments(self, text: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if not text.strip():
            return (), {}

        def collect(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
            return args, kwargs

        candidates = [text]
        try:
            candidates.append(", ".join(shlex.split(text, posix=False)))
        except ValueError:
            pass
        for candidate in candidates:
            try:
                code = compile(f"__sage_collect__({candidate})", "<sage_call>", "eval")
            except SyntaxError:
                continue
            result: tuple[tuple[Any, ...], dict[str, Any]] = eval(
                code, self.shell.user_ns, {"__sage_collect__": collect}
            )
            return result
        raise UsageError(
            f"cannot read the arguments {text!r}: write Python expressions, "
            f'e.g. %sage_call profile "42"'
        )

    # -- %sage_submit ----------------------------------------------------------------------
    @magic_arguments()
    @argument("--background", "-b", action="store_true", help="return at once with the Job")
    @argument(
        "--timeout", "-t", type=float, default=None, help="stop the job after this many seconds"
    )
    @argument("--no-progress", action="store_true", help="do not show a progress line")
    @line_magic
    def sage_submit(self, line: str) -> Any:
        """Run sage_env's pipeline.

        Waits until a finite pipeline is drained, showing progress, then prints a summary.
        With --background it returns the running Job at once (also in sage_env.jobs).
        Interrupting the kernel (Ctrl-C, the stop button) stops the job cleanly and says how
        far it got; a second interrupt stops waiting for it.
        """
        args = parse_argstring(self.sage_submit, line)
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError(f"--timeout must be a number of seconds > 0, got {args.timeout}")
        env = self.env
        if not env.pipeline:
            raise UsageError(
                "sage_env has no pipeline yet; build one first, e.g. "
                "sage_env.from_batch(data).map(fn).sink(print)"
            )
        try:
            job = env.start_job()
        except (ValueError, RuntimeError) as exc:
            raise UsageError(str(exc)) from None
        if args.background:
            return job
        self._wait(job, args.timeout, not args.no_progress)
        return None

    def _wait(self, job: Job, timeout: float | None, show_progress: bool) -> None:
        from IPython.display import display

        handle = display(progress_line(job), display_id=True) if show_progress else None
        try:
            while not job.wait(0.1):
                if handle is not None:
                    handle.update(progress_line(job))
                if timeout is not None and job.elapsed() > timeout:
                    job.stop(timeout=2.0)
                    break
        except KeyboardInterrupt:
            self._interrupted(job)
            return
        finally:
            if handle is not None:
                handle.update(progress_line(job))
        if job.status == "failed":
            job.raise_for_error()
        print(job.summary())

    def _interrupted(self, job: Job) -> None:
        done, total = job.progress()
        of = f" of {total:,}" if total is not None else ""
        try:
            clean = job.stop(timeout=2.0)
        except KeyboardInterrupt:  # a second interrupt: stop waiting
            job._request_stop("stopped")
            clean = False
        done, _ = job.progress()
        note = "" if clean else " (a task was still busy; it stops after its current call)"
        print(f"stopped after {done:,}{of} records{note}", file=sys.stderr)

    # -- %sage_status, %sage_stop, %sage_reset, %sage_env ----------------------------------
    @line_magic
    def sage_status(self, line: str = "") -> StatusReport:
        """Show services (state, workers, queue depth, in flight, done, failed, latency),
        recent jobs and the threads sage_env owns."""
        if line.strip():
            raise UsageError("%sage_status takes no arguments")
        return StatusReport(self.env)

    @magic_arguments()
    @argument("name", nargs="?", help="a service to stop (it starts again on its next call)")
    @argument("--all", action="store_true", help="stop running jobs and every service")
    @line_magic
    def sage_stop(self, line: str = "") -> None:
        """Stop running jobs (no argument), one service (NAME), or everything (--all)."""
        args = parse_argstring(self.sage_stop, line)
        env = self.env
        if args.all:
            jobs = len(env._job_manager.running())
            env.stop(timeout=5.0)
            print(f"stopped {jobs} job{'s' if jobs != 1 else ''} and every service")
        elif args.name:
            if args.name not in env.services:
                raise UsageError(str(ServiceNotFoundError(args.name, env.services)))
            env._dispatcher.stop_service(args.name, timeout=5.0)
            print(f"stopped service {args.name!r}")
        else:
            jobs = env._job_manager.running()
            for job in jobs:
                job.stop(timeout=5.0)
            print(f"stopped {len(jobs)} job{'s' if len(jobs) != 1 else ''}")

    @line_magic
    def sage_reset(self, line: str = "") -> None:
        """Close sage_env (every service's close() runs) and start a fresh, empty one."""
        if line.strip():
            raise UsageError("%sage_reset takes no arguments")
        old = self.env
        services, jobs = len(old.services), len(old.jobs)
        self.runtime.replace_env(self.runtime.backend, old.name)
        print(f"sage_env reset: {services} services and {jobs} jobs removed")

    @magic_arguments()
    @argument("name", nargs="?", help="name of a new environment")
    @argument("--backend", choices=("local", "ray"), default=None, help="threads or Ray")
    @line_magic
    def sage_env(self, line: str = "") -> Any:
        """Show sage_env, or replace it: %sage_env [--backend local|ray] [NAME]."""
        args = parse_argstring(self.sage_env, line)
        if args.name is None and args.backend is None:
            return self.env
        backend = args.backend or self.runtime.backend
        name = args.name or self.env.name
        try:
            return self.runtime.replace_env(backend, name)
        except (NotImplementedError, ValueError) as exc:
            raise UsageError(str(exc)) from None


_OPTION = re.compile(r"\s*(--method|-m|--timeout|-t)(?:\s+|=)(\S+)")


def _split_call_line(line: str) -> tuple[str | None, float | None, str, str]:
    """``[--method M] [--timeout S] NAME ARGS`` → (method, timeout, name, args text)."""
    method: str | None = None
    timeout: float | None = None
    rest = line
    while True:
        m = _OPTION.match(rest)
        if m is None:
            break
        option, value = m.groups()
        if option in ("--method", "-m"):
            method = value
        else:
            try:
                timeout = float(value)
            except ValueError:
                raise UsageError(f"--timeout takes seconds, got {value!r}") from None
        rest = rest[m.end() :]
    m = re.match(r"\s*([A-Za-z_]\w*)(.*)$", rest, re.S)
    if m is None:
        raise UsageError('%sage_call needs a service name: %sage_call profile "42"')
    return method, timeout, m.group(1), m.group(2).strip()
