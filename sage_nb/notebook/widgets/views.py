"""Live views: an ipywidgets ``HTML`` widget whose value the publisher refreshes, displayed
together with a static copy of the same markup.

Every view's output bundle carries ``text/html`` (the last rendered state) beside the widget,
so nbviewer and exported notebooks show it; when the view closes (its job ended, its
environment closed, the kernel shut down) the output is replaced by that static markup alone, so
a notebook reopened without a kernel shows the last state instead of "Error displaying widget".
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from . import render
from .publisher import publish, publisher, shared

if TYPE_CHECKING:
    from ...api.environment import BaseEnvironment
    from ...runtime.job_manager import Job

log = logging.getLogger(__name__)

__all__ = ["GraphView", "LiveView", "MonitorView", "ProgressView", "can_show_widgets"]


class LiveView:
    """Base class: subclasses implement ``render()``, ``environments()`` and ``busy()``."""

    title = "sage_nb"

    def __init__(self) -> None:
        import ipywidgets

        # Invariants: refresh (the publisher thread) and close (any thread) change closed,
        # html and the widget's value under _lock, so a closed view is never updated again;
        # close sends the final static state before releasing it. Nothing that holds _lock
        # takes the publisher's locks (close pokes the publisher after releasing it).
        self._lock = threading.Lock()
        self.display_id = uuid.uuid4().hex
        self.closed = False
        self.updates = 0
        self.html = self.render()
        self.widget = ipywidgets.HTML(value=self.html)
        self.widget.add_class("sage-nb-widget")
        self._displayed = False

    # -- what subclasses provide -------------------------------------------------------------
    def render(self) -> str:
        raise NotImplementedError

    def environments(self) -> list[BaseEnvironment]:
        raise NotImplementedError

    def busy(self) -> bool:
        """True while what it shows is changing (a running job): keep refreshing."""
        return False

    def finished(self) -> bool:
        """True when nothing it shows will change again: the view closes itself."""
        return any(env.closed for env in self.environments())

    # -- refresh, called by the publisher thread ----------------------------------------------
    def refresh(self) -> bool:
        """Render again; push the markup to the widget if it changed. True if it did."""
        with self._lock:
            if self.closed:
                return False
            html = self.render()
            changed = html != self.html
            if changed:
                self.html = html
                self.widget.value = html
                self.updates += 1
        if self.finished():
            self.close()
        return changed

    def close(self) -> None:
        """Stop updating: the output becomes static markup of the state at closing, drawn
        afresh (not the last frame the publisher drew, which may be up to 0.1 s old, or show a
        service as running that a reset has just stopped).

        Returns once that update is sent, also when another thread is closing the view: what
        the caller prints next comes after it.
        """
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.html = self.render()
            except Exception:  # keep the last frame rather than lose the output
                log.debug("final render of %r failed", self, exc_info=True)
            if self._displayed and _in_kernel():
                try:
                    from IPython.display import update_display

                    update_display(
                        {"text/html": self.html, "text/plain": self._plain()},
                        raw=True,
                        display_id=self.display_id,
                    )
                except Exception:  # no kernel to talk to any more: nothing to update
                    pass
            self.widget.close()
        publisher().poke()

    # -- display --------------------------------------------------------------------------
    def show(self) -> None:
        """Display the view under the current cell and start refreshing it."""
        from IPython.display import display

        display(self, display_id=self.display_id)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = dict(self.widget._repr_mimebundle_() or {})
        bundle["text/html"] = self.html
        bundle["text/plain"] = self._plain()
        if not self._displayed and not self.closed:
            self._displayed = True
            publish(self)
        return bundle

    def _plain(self) -> str:
        return f"<{type(self).__name__}: {self.title}>"

    def __repr__(self) -> str:
        return self._plain()


class GraphView(LiveView):
    """The execution graph: sources, operators (with parallelism), sinks and services, with
    data edges and the service calls found at run time; live counts per node and edge.

    Follows ``job`` if given, else the environment's latest job (or its pipeline before any).
    """

    def __init__(self, env: BaseEnvironment, job: Job | None = None) -> None:
        self.env = env
        self.job = job
        self._last: dict[str, tuple[float, int]] = {}
        self.model = render.GraphModel()
        super().__init__()

    def environments(self) -> list[BaseEnvironment]:
        return [self.env]

    def _current_job(self) -> Job | None:
        if self.job is not None:
            return self.job
        jobs = self.env.jobs
        return jobs[-1] if jobs else None

    def busy(self) -> bool:
        job = self._current_job()
        return job is not None and job.status == "running"

    def finished(self) -> bool:
        if self.job is not None and self.job.done:
            return True
        return super().finished()

    def build(self) -> render.GraphModel:
        """The numbers and shapes to draw (also what tests read)."""
        from ...runtime.graph import ExecutionGraph

        job = self._current_job()
        if job is not None:
            graph, state, title = job.execution_graph, job.status, f"{job.name}: {job.status}"
        elif self.env.pipeline:
            graph = ExecutionGraph.compile(self.env.pipeline)
            state, title = "idle", f"{self.env.name}: not submitted yet"
        else:
            return render.GraphModel(title=f"{self.env.name}: no pipeline")
        model = render.GraphModel(title=title)
        now = time.monotonic()
        called: set[str] = set()
        for node in graph.nodes:
            s = node.statistics()
            lines = [f"in {render.count(s.records_in)} · out {render.count(s.records_out)}"]
            if s.errors:
                lines[0] += f" · err {render.count(s.errors)}"
            if s.kind == "source" and s.total is not None:
                lines.append(f"{render.count(s.records_out)} of {render.count(s.total)}")
            label = s.label + (f" x{s.parallelism}" if s.parallelism > 1 else "")
            model.nodes.append(render.NodeView(f"n{s.id}", label, s.kind, lines, state))
            model.data[s.label] = {
                "records_in": s.records_in,
                "records_out": s.records_out,
                "errors": s.errors,
                "parallelism": s.parallelism,
                "calls": list(s.calls),
            }
            for name in s.calls:
                called.add(name)
                model.edges.append(render.EdgeView(f"n{s.id}", f"s:{name}", "call"))
        depth = _queue_depths(job)
        for e in graph.edges:
            label = ""
            if not e.chained:
                key = f"{e.upstream.id}->{e.downstream.id}:{e.port}"
                total = e.records[0]
                before = self._last.get(key)
                speed = (total - before[1]) / (now - before[0]) if before and now > before[0] else 0
                self._last[key] = (now, total)
                label = f"{e.partitioning} · q {depth.get(e.downstream.id, 0)}"
                if speed:
                    label += f" · {render.rate(speed)}"
            model.edges.append(
                render.EdgeView(f"n{e.upstream.id}", f"n{e.downstream.id}", "data", label)
            )
        stats = {s.name: s for s in _service_statistics(self.env)}
        for name in sorted(set(self.env.services) | called):
            st = stats.get(name)
            if st is None:
                lines, sstate = ["not registered"], "down"
            else:
                lines = [
                    f"in flight {st.in_flight} · q {st.queued}",
                    f"p50 {render.format_seconds(st.p50)} · p95 {render.format_seconds(st.p95)}",
                ]
                sstate = "healthy" if st.state == "running" else "idle"
                model.data[f"service:{name}"] = {
                    "in_flight": st.in_flight,
                    "queued": st.queued,
                    "done": st.done,
                    "p50": st.p50,
                    "p95": st.p95,
                }
            model.nodes.append(render.NodeView(f"s:{name}", name, "service", lines, sstate))
        return model

    def render(self) -> str:
        self.model = self.build()
        return render.graph_svg(self.model)

    def _plain(self) -> str:
        job = self._current_job()
        return f"<GraphView of {job.execution_graph.describe() if job else self.env.name}>"


def _service_statistics(env: BaseEnvironment) -> tuple[Any, ...]:
    """``env.statistics().services`` without the rest (that also summarizes every job the
    environment ever ran, a cost that grows with each job), once per refresh round."""
    stats: tuple[Any, ...] = shared(("services", id(env)), lambda: tuple(env.service_statistics()))
    return stats


def _queue_depths(job: Job | None) -> dict[int, int]:
    """Records (not batches) waiting in each task's input channel, by the task's head node."""
    depths: dict[int, int] = {}
    if job is None:
        return depths
    for task in job.tasks:
        if task.channel is not None:
            head = task.region.head.id
            depths[head] = depths.get(head, 0) + task.channel.records
    return depths


class MonitorView(LiveView):
    """Every service's (or the named ones') request/response traffic: queue depth, in flight,
    done, failed, timed out, retries, latency percentiles and history, recent requests."""

    HISTORY = 60

    def __init__(self, env: BaseEnvironment, names: list[str] | None = None) -> None:
        self.env = env
        self.names = names
        self.history: dict[str, deque[float]] = {}
        self.services: list[Any] = []
        self._last_done: dict[str, int] = {}
        super().__init__()

    def environments(self) -> list[BaseEnvironment]:
        return [self.env]

    def busy(self) -> bool:
        return any(s.queued or s.in_flight for s in self.services) or bool(self.env.running_jobs())

    def render(self) -> str:
        stats = _service_statistics(self.env)
        if self.names:
            stats = tuple(s for s in stats if s.name in self.names)
        self.services = list(stats)
        contexts = self.env.service_contexts()
        recent = {}
        for s in stats:
            hist = self.history.setdefault(s.name, deque(maxlen=self.HISTORY))
            if s.p50 is not None and s.done != self._last_done.get(s.name):
                hist.append(s.p50)
                self._last_done[s.name] = s.done
            ctx = contexts.get(s.name)
            recent[s.name] = list(ctx.recent) if ctx is not None else []
        history = {k: list(v) for k, v in self.history.items()}
        return render.monitor_html(f"{self.env.name}: services", stats, history, recent)

    def _plain(self) -> str:
        watched = ", ".join(self.names) if self.names else "every service"
        return f"<MonitorView of {self.env.name}: {watched}>"

    def data(self) -> dict[str, dict[str, Any]]:
        """The numbers shown, per service (for tests and logs)."""
        return {
            s.name: {
                "queued": s.queued,
                "in_flight": s.in_flight,
                "done": s.done,
                "failed": s.failed,
                "timed_out": s.timed_out,
                "cancelled": s.cancelled,
                "rejected": s.rejected,
                "retries": s.retries,
                "p50": s.p50,
                "p95": s.p95,
            }
            for s in self.services
        }


class ProgressView(LiveView):
    """Records done / total per source of a job, rate and ETA; closes when the job ends.

    With ``autoclose=False`` it stays open (showing the final numbers) until ``close()``:
    what ``%sage_submit`` uses, so the cell that waits for the job sends the final state.
    """

    def __init__(self, job: Job, *, autoclose: bool = True) -> None:
        self.job = job
        self.autoclose = autoclose
        super().__init__()

    def environments(self) -> list[BaseEnvironment]:
        # The job's end fires its environment's activity signal: that wakes the publisher.
        env = self.job.environment
        return [env] if env is not None else []

    def busy(self) -> bool:
        return self.job.status == "running"

    def finished(self) -> bool:
        return self.autoclose and self.job.done

    def render(self) -> str:
        done, total = self.job.progress()  # records finished, not merely read
        heads = [n for n in self.job.execution_graph.nodes if n.kind == "source"]
        if len(heads) == 1:
            sources = [(heads[0].label, done, total)]
        else:  # per source what it read, then the records finished over all of them
            sources = [(n.label, sum(c.records_out for c in n.counters), n.total) for n in heads]
            sources.append(("finished", done, total))
        elapsed = self.job.elapsed()
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if total and rate > 0 and done < total else None
        return render.progress_html(f"{self.job.name}: {self.job.status}", sources, rate, eta)

    def _plain(self) -> str:
        from ..display import progress_line

        return f"{self.job.name} {self.job.status}: {progress_line(self.job)}"


def can_show_widgets() -> bool:
    """True in a Jupyter kernel with ipywidgets installed: a live view can render there."""
    if not _in_kernel():
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where display updates reach a front end)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - the notebook extra installs IPython
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
