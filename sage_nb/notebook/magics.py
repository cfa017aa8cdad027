"""IPython magics: a thin layer over ``sage_env`` (see ``kernel.py``).

Each magic's help (``%sage_submit?``) comes from its argument parser. A user mistake raises
``UsageError``: IPython shows it as one line, without a traceback, so every message also says
the fix (argument errors end with the magic's usage line).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.version import __version__
from ..errors import ServiceCallError, ServiceNotFoundError
from ..runtime.interrupts import Interrupts
from .arguments import evaluate_call_arguments, max_queued, parse_line, split_call_line, usage_line
from .cells import deploy, factory_from_cell, user_frames
from .display import StatusReport, job_summary, plural
from .submit import (
    JobInterrupted,
    calls_since,
    pipeline_to_run,
    service_calls,
    start_job_in_cell,
    wait_in_cell,
)

if TYPE_CHECKING:
    from ..core.transformation import Transformation
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


@magics_class
class SageMagics(Magics):
    """The ``%sage_*`` magics."""

    shell: Any  # the InteractiveShell; never None once registered

    def __init__(self, shell: Any, runtime: KernelRuntime) -> None:
        super().__init__(shell)
        self.runtime = runtime
        # Transformations the previous %sage_submit ran, to tell a re-built pipeline from
        # an old one (see pipeline_to_run).
        self._submitted: list[Transformation] = []

    @property
    def env(self) -> Any:
        return self.runtime.env

    # -- help ------------------------------------------------------------------------------
    @magic_arguments()
    @line_magic
    def sage_nb(self, line: str = "") -> None:
        """Show what sage_nb's magics do."""
        parse_line(self.sage_nb, line)
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
        type=max_queued,
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
        args = parse_line(self.sage_service, line)
        factory, existing = factory_from_cell(self.shell, self.env, args, cell)
        deploy(self.env, factory, existing)

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
        method, timeout, name, rest = split_call_line(line, usage_line(self.sage_call))
        call_args, call_kwargs = evaluate_call_arguments(rest, self.shell.user_ns)
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
            cause.__traceback__ = user_frames(cause.__traceback__)
            raise exc.with_traceback(None) from cause

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
        args = parse_line(self.sage_submit, line)
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
        env.pipeline = pipeline_to_run(env.pipeline, self._submitted)
        calls_before = service_calls(env)
        with Interrupts() as interrupts:
            job = start_job_in_cell(env, interrupts)
            self._submitted = list(env.pipeline)
            if args.background:
                return job
            wait_in_cell(job, interrupts, timeout=args.timeout, show_progress=not args.no_progress)
        if job.status == "failed":
            job.raise_for_error()
        print(job_summary(job, calls_since(env, calls_before), timeout=args.timeout))
        return None

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
        args = parse_line(self.sage_graph, line)
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
        args = parse_line(self.sage_monitor, line)
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
        parse_line(self.sage_status, line)
        return StatusReport(self.env)

    @magic_arguments()
    @argument("name", nargs="?", help="a service to stop (it starts again on its next call)")
    @argument("--all", action="store_true", help="stop running jobs and every service")
    @line_magic
    def sage_stop(self, line: str = "") -> None:
        """Stop running jobs (no argument), one service (NAME), or everything (--all).

        A stopped service's close() runs; it starts again (setup() runs) on its next call.
        """
        args = parse_line(self.sage_stop, line)
        env = self.env
        if args.all and args.name:
            raise UsageError(
                f"give a service name or --all, not both; usage: {usage_line(self.sage_stop)}"
            )
        if args.all:
            jobs = len(env.running_jobs())
            env.stop(timeout=5.0)
            print(f"stopped {plural(jobs, 'job')} and every service")
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
            print(f"stopped {plural(len(jobs), 'job')}")

    @magic_arguments()
    @line_magic
    def sage_reset(self, line: str = "") -> None:
        """Close sage_env (every service's close() runs) and start a fresh, empty one."""
        parse_line(self.sage_reset, line)
        old = self.env
        services, jobs = len(old.services), len(old.jobs)
        self.runtime.replace_env(self.runtime.backend, old.name, self.runtime.address)
        self._submitted = []
        print(f"sage_env reset: {plural(services, 'service')} and {plural(jobs, 'job')} removed")

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
        args = parse_line(self.sage_env, line)
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
