"""IPython magics: a thin layer over ``sage_env`` (see ``kernel.py``).

Each magic's help (``%sage_submit?``) comes from its argument parser. A user mistake raises
``UsageError``: IPython shows it as one line, without a traceback, so every message also says
the fix (argument errors end with the magic's usage line).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import math
import os
import re
import shlex
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .. import __version__
from ..errors import ServiceCallError, ServiceNotFoundError, ServiceUnavailableError
from ..runtime.interrupts import Interrupts
from ..runtime.retry import RetryPolicy
from ..runtime.service.service_factory import ServiceFactory, ServiceOptions
from ..runtime.waiting import stop_interrupted, wait_for_job
from .display import ProgressReport, StatusReport, job_summary

if TYPE_CHECKING:
    from types import TracebackType

    from ..core.transformation import Transformation
    from ..runtime.job_manager import Job
    from .kernel import KernelRuntime

__all__ = ["JobInterrupted", "SageMagics"]

_MAGICS_HELP = """\
sage_nb {version}: pipelines that call services, in this kernel.

  %%sage_service NAME   a cell that defines a service class (or a function: its process)
  %sage_call NAME ARGS  call a service: %sage_call profile "42"
  %sage_submit          run sage_env's pipeline (--background to return at once)
  %sage_status          services, jobs, queue depths, threads
  %sage_graph [JOB]     the execution graph, live: records per node, queues, service calls
  %sage_monitor [NAME]  services' traffic, live: queues, latency, recent requests
  %sage_stop [NAME]     stop running jobs, or service NAME (--all: everything)
  %sage_reset           close sage_env and start a fresh one
  %sage_env             show sage_env, or make a new one (--backend local|ray, NAME)

sage_env is the environment: sage_env.from_batch(data).map(fn).sink(print) builds the pipeline,
sage_env.call_service(...) and await sage_env.call_service_async(...) call services.
Help on one magic: %sage_submit?"""

#: Method names a service cell may not pick with --method: lifecycle hooks and helpers.
_RESERVED_METHODS = frozenset({"setup", "close", "health", "call_service", "call_service_async"})

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class JobInterrupted(KeyboardInterrupt):
    """The kernel was interrupted during ``%sage_submit``; the job has been stopped.

    It is a ``KeyboardInterrupt``, so the rest of the cell and the cells queued after it
    (Run All) do not run; IPython shows it as one line instead of a traceback.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mKeyboardInterrupt\x1b[0m: {self}"]


def _usage(magic: Callable[..., Any]) -> str:
    """The usage line of a magic's argument parser, on one line: ``%sage_stop [--all] [name]``."""
    text = " ".join(magic.parser.format_usage().split())  # type: ignore[attr-defined]
    return text.removeprefix("::").strip()


def _parse(magic: Callable[..., Any], line: str) -> Any:
    """``parse_argstring`` whose errors end with the usage line (the fix)."""
    try:
        return parse_argstring(magic, line)
    except UsageError as exc:
        raise UsageError(f"{exc}; usage: {_usage(magic)}") from None
    except ValueError as exc:  # unbalanced quotes
        raise UsageError(f"cannot split {line!r}: {exc}; usage: {_usage(magic)}") from None


def _max_queued(text: str) -> int | None:
    """``--max-queued``: a positive int, or ``none`` for no limit."""
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a number >= 1 or none, got {text!r}")
    return value


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' if n != 1 else ''}"


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


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """Drop the runtime's frames at the head of a service's traceback (its worker loop)."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return tb


@magics_class
class SageMagics(Magics):
    """The ``%sage_*`` magics."""

    shell: Any  # the InteractiveShell; never None once registered

    def __init__(self, shell: Any, runtime: KernelRuntime) -> None:
        super().__init__(shell)
        self.runtime = runtime
        # Transformations the previous %sage_submit ran, to tell a re-built pipeline from
        # an old one (see _pipeline_to_run).
        self._submitted: list[Transformation] = []

    @property
    def env(self) -> Any:
        return self.runtime.env

    # -- help ------------------------------------------------------------------------------
    @magic_arguments()
    @line_magic
    def sage_nb(self, line: str = "") -> None:
        """Show what sage_nb's magics do."""
        _parse(self.sage_nb, line)
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
    @argument(
        "--concurrency",
        "-c",
        type=int,
        default=1,
        help="worker threads; on Ray, calls each actor runs at once (default 1)",
    )
    @argument(
        "--max-queued",
        type=_max_queued,
        default=10_000,
        metavar="N",
        help="requests that may wait for a worker (default 10000; none: no limit)",
    )
    @argument(
        "--overflow",
        choices=("block", "fail"),
        default="block",
        help="when the queue is full, a caller waits for room until its deadline (block, the "
        "default) or fails at once with ServiceOverloadedError (fail)",
    )
    @argument(
        "--retries",
        type=int,
        default=0,
        metavar="N",
        help="retries of a call that failed because the service was unavailable or had not "
        "started it in time (default 0); retried methods must be idempotent",
    )
    @argument(
        "--max-restarts",
        type=int,
        default=3,
        metavar="N",
        help="restarts of a crashed worker (on Ray: actor) before the service is down (default 3)",
    )
    @argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="Ray backend: actors serving the name, each call going to the least busy (default 1)",
    )
    @argument("--num-cpus", type=float, metavar="X", help="Ray backend: CPUs each actor asks for")
    @argument("--num-gpus", type=float, metavar="X", help="Ray backend: GPUs each actor asks for")
    @argument(
        "--replace",
        action="store_true",
        help="take over a name registered from code (re-running this cell never needs it)",
    )
    @cell_magic
    def sage_service(self, line: str, cell: str) -> None:
        """Define a service in a cell: one class, or one function that becomes its process.

        The cell runs in the notebook's namespace, so it can use imports and names of earlier
        cells, and the class (or function) it defines stays there. Re-running the cell swaps
        the new version in place: it is built first (if its constructor or setup() raises, the
        old version keeps serving), then the old version finishes its current request and its
        close() runs; queued requests are answered by the new version. The service's worker
        threads are named sage_nb/service/NAME.

        Options set how it is served (see register_service): --concurrency, --max-queued,
        --overflow, --retries and --max-restarts; with the Ray backend also --replicas,
        --num-cpus and --num-gpus. Re-running the cell with other options applies them; on
        Ray, a change to the actors (replicas, resources, concurrency, restarts) restarts the
        service once the requests already queued are answered.

        Example::

            %%sage_service profile --concurrency 4 --retries 2
            class Profile:
                def setup(self):
                    self.db = {"42": {"age": 62}}
                def process(self, user_id):
                    return self.db.get(user_id, {})
        """
        args = _parse(self.sage_service, line)
        name = args.name
        if not name.isidentifier():
            raise UsageError(
                f"service name {name!r} is not an identifier; try %%sage_service profile"
            )
        if args.concurrency < 1:
            raise UsageError(
                f"--concurrency must be 1 or more, got {args.concurrency}; "
                f"e.g. %%sage_service {name} --concurrency 4"
            )
        for flag, value in (("--retries", args.retries), ("--max-restarts", args.max_restarts)):
            if value < 0:
                raise UsageError(f"{flag} must be 0 or more, got {value}")
        backend_options = self._backend_options(args)
        method = args.method
        if not method.isidentifier() or method.startswith("_") or method in _RESERVED_METHODS:
            raise UsageError(
                f"--method {method!r} cannot be called: name a public method of the service, "
                f"e.g. --method lookup"
            )
        target_name, is_class = self._service_definition(cell)
        env = self.env
        existing = env.service_factory(name) if name in env.services else None
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
        self._deploy(factory, existing)

    def _backend_options(self, args: Any) -> dict[str, Any] | None:
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
        if getattr(self.env, "backend", None) != "ray":
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
        env = self.env
        name = factory.name
        workers = _plural(factory.options.concurrency, "worker")
        replicas = (factory.options.backend or {}).get("num_replicas", 1)
        if replicas > 1:
            workers = f"{_plural(replicas, 'replica')}, {workers} each"
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
            raise exc.with_traceback(_user_frames(exc.__traceback__)) from exc.__cause__
        try:
            env.start_service(name)
        except ServiceUnavailableError as exc:
            if existing is None:
                env.unregister_service(name)
            else:
                env.register_factory(existing, replace=True)
            error = exc.__cause__ or exc
            raise error.with_traceback(_user_frames(error.__traceback__)) from None
        if running and outcome == "restarted":
            answered = f"; {_plural(queued, 'queued request')} answered first" if queued else ""
            print(f"✓ service {name!r} restarted with its new options ({workers}){answered}")
        elif running:
            version = ctx.task.statistics().version if ctx and ctx.task else "?"
            handed = f"; {_plural(queued, 'queued request')} handed over" if queued else ""
            print(f"✓ service {name!r} updated to version {version} ({workers}){handed}")
        else:
            print(f"✓ service {name!r} ready ({workers})")

    # -- %sage_call ------------------------------------------------------------------------
    @magic_arguments()
    @argument("--method", "-m", help="the method to call (default: process)")
    @argument("--timeout", "-t", type=float, help="seconds to wait (default 10)")
    @argument("name", help="the service")
    @argument(
        "args",
        nargs="*",
        help="Python expressions evaluated in the notebook, separated by commas or spaces; "
        "keyword arguments too",
    )
    @line_magic
    def sage_call(self, line: str) -> Any:
        """Call a service and show its result.

        Examples::

            %sage_call profile "42"
            %sage_call --method lookup profile user_id, fields=["age"]
        """
        __tracebackhide__ = True
        method, timeout, name, rest = _split_call_line(line, _usage(self.sage_call))
        call_args, call_kwargs = self._evaluate_arguments(rest)
        try:
            return self.env.call_service(
                name, *call_args, timeout=timeout, method=method, **call_kwargs
            )
        except ServiceNotFoundError as exc:
            raise UsageError(str(exc)) from None
        except ServiceCallError as exc:
            # Show the service's own exception from its first line of user code, then this
            # call; the runtime's frames in between say nothing to the notebook's user.
            cause = exc.__cause__
            if cause is None:
                raise exc.with_traceback(None) from None
            cause.__traceback__ = _user_frames(cause.__traceback__)
            raise exc.with_traceback(None) from cause

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

        Runs what was built since the previous %sage_submit (so re-running a cell that builds
        and submits a pipeline runs it once), or the previous pipeline again if nothing new
        was built. Waits until a finite pipeline is drained, showing its progress (records
        done / total per source, rate, ETA; live in a notebook), then prints a summary. With
        --background it returns the running Job at once (also in sage_env.jobs). Interrupting
        the kernel (Ctrl-C, the stop button) stops the job cleanly and says how far it got; a
        second interrupt stops waiting for it.
        """
        args = _parse(self.sage_submit, line)
        if args.timeout is not None and not args.timeout > 0:
            raise UsageError(
                f"--timeout must be a number of seconds > 0, got {args.timeout}; "
                f"e.g. %sage_submit --timeout 30"
            )
        env = self.env
        if not env.pipeline:
            raise UsageError(
                "sage_env has no pipeline yet; build one first, e.g. "
                "sage_env.from_batch(data).map(fn).sink(print)"
            )
        running = env.running_jobs()
        if running:
            raise UsageError(
                f"job {running[0].name!r} is still running; stop it with %sage_stop "
                f"(or wait: sage_env.jobs[-1].wait())"
            )
        env.pipeline = self._pipeline_to_run(env.pipeline)
        calls_before = _service_calls(env)
        job: Job | None = None
        progress: _Progress | None = None
        with Interrupts() as interrupts:
            try:
                # Interrupts only count until check() (see Interrupts): one that arrives
                # while the job starts its threads stops the whole job once it exists.
                try:
                    job = env.start_job()
                except (ValueError, TypeError, RuntimeError) as exc:
                    raise UsageError(str(exc)) from None
                interrupts.check()
                self._submitted = list(env.pipeline)
                if args.background:
                    return job
                if not args.no_progress:
                    progress = _Progress(job)
                # Short waits in the cell's own thread: an interrupt stops the job within 0.1 s.
                wait_for_job(
                    job,
                    interrupts,
                    timeout=args.timeout,
                    tick=progress.tick if progress is not None else None,
                )
            except KeyboardInterrupt:
                if job is None:
                    raise
                raise self._interrupted(job, interrupts) from None  # before progress closes
            finally:
                if progress is not None:
                    progress.close()
        if job.status == "failed":
            job.raise_for_error()
        print(job_summary(job, _calls_since(env, calls_before), timeout=args.timeout))
        return None

    def _pipeline_to_run(self, pipeline: list[Transformation]) -> list[Transformation]:
        """What was built since the last submit if it stands on its own, else everything."""
        old = {id(t) for t in self._submitted}
        new = [t for t in pipeline if id(t) not in old]
        if not new or len(new) == len(pipeline):
            return pipeline
        built = {id(t) for t in new}
        if all(id(upstream) in built for t in new for upstream in t.inputs):
            return new
        return pipeline  # the new operators extend the old pipeline: run all of it

    def _interrupted(self, job: Job, interrupts: Interrupts) -> JobInterrupted:
        """Stop ``job`` after an interrupt (a second interrupt stops waiting for a busy task);
        the error says how far it got."""

        def say_busy() -> None:
            print(
                f"stopping job {job.name!r}: a task is busy; interrupt again to stop waiting",
                file=sys.stderr,
            )

        clean = stop_interrupted(job, interrupts, on_busy=say_busy)
        done, total = job.progress()
        of = f" of {total:,}" if total is not None else ""
        note = "" if clean else " (a task was still busy; it stops after its current call)"
        return JobInterrupted(f"job {job.name!r} stopped after {done:,}{of} records{note}")

    # -- %sage_graph, %sage_monitor --------------------------------------------------------
    @magic_arguments()
    @argument(
        "job",
        nargs="?",
        help="a job's name, as %%sage_status lists them (default: follow sage_env's latest job)",
    )
    @line_magic
    def sage_graph(self, line: str = "") -> None:
        """Show the execution graph, live: sources, operators (xN: parallel instances), sinks
        and the services they call.

        Each node shows records in and out and errors; each data edge its partitioning, queue
        depth and throughput; each service its requests in flight, queue and p50/p95 latency.
        Dashed edges are service calls, found while the job runs. Without a job name the view
        draws the pipeline built so far and follows each job sage_env runs; with one it shows
        that job and keeps its final counts once it ends. Updates come from one publisher
        thread, at most 10 a second; a saved notebook keeps the last state. Same as
        display(sage_env.graph()) or display(job.graph()).
        """
        args = _parse(self.sage_graph, line)
        env = self.env
        if args.job is None:
            if not env.pipeline and not env.jobs:
                raise UsageError(
                    "sage_env has no pipeline yet; build one first, e.g. "
                    "sage_env.from_batch(data).map(fn).sink(print), then %sage_graph"
                )
            _show(lambda: env.graph())
            return
        jobs = {job.name: job for job in env.jobs}
        if args.job not in jobs:
            known = ", ".join(repr(name) for name in jobs) or "none submitted yet"
            raise UsageError(
                f"no job {args.job!r} in sage_env (jobs: {known}); %sage_graph without a name "
                f"follows the latest job"
            )
        job = jobs[args.job]
        _show(lambda: job.graph())

    @magic_arguments()
    @argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="services to watch (default: every service, also those registered later)",
    )
    @line_magic
    def sage_monitor(self, line: str = "") -> None:
        """Show services' request/response traffic, live.

        For each service: requests queued, in flight, done, failed, timed out and retried,
        p50/p95/p99 latency with a sparkline of its recent p50, and the last requests (method,
        arguments, outcome, duration). Values are shown as text: a result containing markup is
        never rendered. Updates come from one publisher thread, at most 10 a second, and stop
        when sage_env is closed; a saved notebook keeps the last state. Numbers without a
        widget: sage_env.statistics().

        Examples::

            %sage_monitor
            %sage_monitor profile cache
        """
        args = _parse(self.sage_monitor, line)
        env = self.env
        names = list(dict.fromkeys(n for arg in args.names for n in arg.split(",") if n))
        missing = [n for n in names if n not in env.services]
        if missing:
            registered = ", ".join(repr(n) for n in env.services) or "none"
            raise UsageError(
                f"no service {missing[0]!r} (registered: {registered}); define it with "
                f"%%sage_service {missing[0]}, or run %sage_monitor to watch every service"
            )
        _show(lambda: _monitor_view(env, names or None))

    # -- %sage_status, %sage_stop, %sage_reset, %sage_env ----------------------------------
    @magic_arguments()
    @line_magic
    def sage_status(self, line: str = "") -> StatusReport:
        """Show services (state, workers, queue depth, in flight, done, failed, latency),
        recent jobs and the threads sage_env owns."""
        _parse(self.sage_status, line)
        return StatusReport(self.env)

    @magic_arguments()
    @argument("name", nargs="?", help="a service to stop (it starts again on its next call)")
    @argument("--all", action="store_true", help="stop running jobs and every service")
    @line_magic
    def sage_stop(self, line: str = "") -> None:
        """Stop running jobs (no argument), one service (NAME), or everything (--all).

        A stopped service's close() runs; it starts again (setup() runs) on its next call.
        """
        args = _parse(self.sage_stop, line)
        env = self.env
        if args.all and args.name:
            raise UsageError(
                f"give a service name or --all, not both; usage: {_usage(self.sage_stop)}"
            )
        if args.all:
            jobs = len(env.running_jobs())
            env.stop(timeout=5.0)
            print(f"stopped {_plural(jobs, 'job')} and every service")
        elif args.name:
            if args.name not in env.services:
                registered = ", ".join(repr(n) for n in env.services) or "none"
                raise UsageError(
                    f"no service {args.name!r} to stop (registered: {registered}); "
                    f"%sage_status lists them"
                )
            env.stop_service(args.name, timeout=5.0)
            print(f"stopped service {args.name!r}")
        else:
            jobs = env.running_jobs()
            for job in jobs:
                job.stop(timeout=5.0)
            print(f"stopped {_plural(len(jobs), 'job')}")

    @magic_arguments()
    @line_magic
    def sage_reset(self, line: str = "") -> None:
        """Close sage_env (every service's close() runs) and start a fresh, empty one."""
        _parse(self.sage_reset, line)
        old = self.env
        services, jobs = len(old.services), len(old.jobs)
        self.runtime.replace_env(self.runtime.backend, old.name, self.runtime.address)
        self._submitted = []
        print(f"sage_env reset: {_plural(services, 'service')} and {_plural(jobs, 'job')} removed")

    @magic_arguments()
    @argument("name", nargs="?", help="name of a new environment")
    @argument("--backend", choices=("local", "ray"), default=None, help="threads or Ray")
    @argument(
        "--address",
        default=None,
        help="Ray cluster to join: auto, host:port or ray://host:port (default: a local one)",
    )
    @line_magic
    def sage_env(self, line: str = "") -> Any:
        """Show sage_env, or replace it with a new, empty one (the old one is closed).

        ``%sage_env --backend ray`` runs services and parallel operators as Ray actors on a
        local Ray cluster, started once per kernel (re-running the cell reuses it);
        ``--address auto`` or ``--address ray://host:10001`` joins a running cluster.
        """
        args = _parse(self.sage_env, line)
        if args.name is None and args.backend is None and args.address is None:
            return self.env
        backend = args.backend or ("ray" if args.address else self.runtime.backend)
        if args.address and backend != "ray":
            raise UsageError("--address is for the Ray backend: add --backend ray")
        name = args.name or self.env.name
        try:
            env = self.runtime.replace_env(backend, name, args.address)
        except (ImportError, ConnectionError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        self._submitted = []
        return env


class _Progress:
    """What ``%sage_submit`` shows while it waits.

    In a notebook: a live ``ProgressView`` (records done / total per source, rate, ETA) that
    the publisher thread refreshes; the cell closes it at the end, so the output keeps the
    final state as static HTML, above the summary. Elsewhere (a terminal, no ipywidgets): a
    ``ProgressReport`` that each tick of the waiting loop replaces.
    """

    def __init__(self, job: Job) -> None:
        from IPython.display import display

        from .widgets.views import ProgressView, can_show_widgets

        self.job = job
        self.live: ProgressView | None = None
        self.handle: Any = None
        if can_show_widgets():
            # Closed here, not by the publisher: the final state then goes out with this
            # cell's header, before the summary (see close()).
            self.live = ProgressView(job, autoclose=False)
            self.live.show()
        else:
            self.handle = display(ProgressReport(job), display_id=True)

    def tick(self) -> None:
        if self.handle is not None:
            self.handle.update(ProgressReport(self.job))

    def close(self) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.close()
        else:
            self.tick()


def _monitor_view(env: Any, names: list[str] | None) -> Any:
    from .widgets import MonitorView

    return MonitorView(env, names)


def _show(make_view: Callable[[], Any]) -> None:
    """Display a live view under the cell; a missing ipywidgets is a one-line fix."""
    try:
        view = make_view()
    except ImportError as exc:
        raise UsageError(
            f'live views need ipywidgets ({exc}); install them: pip install "sage_nb[notebook]"'
        ) from None
    view.show()


def _service_calls(env: Any) -> dict[str, int]:
    return {s.name: s.done + s.failed + s.timed_out for s in env.statistics().services}


def _calls_since(env: Any, before: dict[str, int]) -> dict[str, tuple[int, Any]]:
    """Calls each service answered since ``before``, with its statistics."""
    found = {}
    for s in env.statistics().services:
        n = s.done + s.failed + s.timed_out - before.get(s.name, 0)
        if n > 0:
            found[s.name] = (n, s)
    return found


_OPTION = re.compile(r"\s*(--method|-m|--timeout|-t)(?:\s+|=)(\S+)")


def _split_call_line(line: str, usage: str) -> tuple[str | None, float | None, str, str]:
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
                timeout = -1.0
            if not timeout > 0:
                raise UsageError(
                    f"--timeout takes seconds > 0, got {value!r}; e.g. --timeout 2.5"
                ) from None
        rest = rest[m.end() :]
    m = re.match(r"\s*([A-Za-z_]\w*)(.*)$", rest, re.S)
    if m is None:
        option = rest.split()[0] if rest.strip().startswith("-") else None
        what = f"unknown option {option}" if option else "a service name is missing"
        raise UsageError(f'{what}; usage: {usage}, e.g. %sage_call profile "42"')
    return method, timeout, m.group(1), m.group(2).strip()
