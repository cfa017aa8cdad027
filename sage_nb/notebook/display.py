"""Text and HTML views of runtime state, for magics and ``repr`` in notebooks.

Every view has a plain-text form (terminals, nbval, saved notebooks without HTML) and an HTML
form; every value put in HTML is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..api.environment import BaseEnvironment
    from ..runtime.job_manager import Job

__all__ = [
    "ProgressReport",
    "StatusReport",
    "format_seconds",
    "job_summary",
    "plural",
    "progress_line",
    "table_html",
    "table_text",
]


def format_seconds(seconds: float | None) -> str:
    """Three significant digits, at most 7 characters: ``25.0 µs``, ``1.25 ms``, ``12.5 s``."""
    if seconds is None:
        return "-"
    for scale, unit in ((1e-6, "µs"), (1e-3, "ms"), (1.0, "s")):
        value = seconds / scale
        if value < 999.5 or unit == "s":
            break
    if value >= 99.95:
        return f"{value:.0f} {unit}"
    if value >= 9.995:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def table_text(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; numbers and durations are right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = [
        bool(rows) and all(isinstance(row[i], (int, float)) or _numeric(row[i]) for row in rows)
        for i in range(len(headers))
    ]
    lines = [
        "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(value: Any) -> bool:
    text = value.strip() if isinstance(value, str) else ""
    return text in ("-", "?") or text[:1].isdigit()


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f'<table class="sage-nb {css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def plural(n: int, word: str) -> str:
    """``1 worker``, ``1,000 workers``."""
    return f"{n:,} {word}{'s' if n != 1 else ''}"


def progress_line(job: Job) -> str:
    """``1,234 / 50,000 records (2.5%), 12,000 rec/s, ETA 3.1 s``."""
    done, total = job.progress()
    elapsed = job.elapsed()
    rate = done / elapsed if elapsed > 0 else 0.0
    text = f"{done:,} / {total:,} records" if total else f"{done:,} records"
    if total:
        text += f" ({100 * done / total:.1f}%)"
    text += f", {rate:,.0f} rec/s"
    if total and rate > 0 and done < total:
        text += f", ETA {(total - done) / rate:.1f} s"
    return text


class ProgressReport:
    """A job's progress, once: a bar (HTML) and the progress line. What ``%sage_submit``
    shows while it waits where no live view can render (``widgets.ProgressView`` is the
    live one)."""

    def __init__(self, job: Job) -> None:
        self.done, self.total = job.progress()
        self.status = job.status
        self.line = progress_line(job)
        self.job_name = job.name

    def __repr__(self) -> str:
        return f"{self.job_name} {self.status}: {self.line}"

    def _repr_html_(self) -> str:
        bar = (
            f'<progress value="{self.done}" max="{self.total}" style="width: 20em"></progress> '
            if self.total
            else ""
        )
        return (
            f'<div class="sage-nb-progress">{bar}<code>{html.escape(self.job_name)}</code> '
            f"{html.escape(self.status)}: {html.escape(self.line)}</div>"
        )


def job_summary(
    job: Job, calls: Mapping[str, tuple[int, Any]] | None = None, *, timeout: float | None = None
) -> str:
    """What ``%sage_submit`` prints when a job ended: records per operator, service calls.

    ::

        ✓ job 'sage_env-2' finished in 0.84 s: 50,000 of 50,000 records, errors: 0
          from_batch 50,000 → map(Enrich) 50,000 → filter 49,000 → sink(append) 49,000
          service calls: profile 50,000 (p50 31.0 µs, p95 85.2 µs)
    """
    stats = job.statistics()
    of = f" of {stats.total:,}" if stats.total is not None else ""
    errors = sum(n.errors for n in stats.nodes)
    mark = "✓ " if stats.status == "finished" else ""
    why = f" (--timeout {timeout:g} s)" if stats.status == "stopped" and timeout else ""
    lines = [
        f"{mark}job {stats.name!r} {stats.status}{why} in {format_seconds(stats.elapsed)}: "
        f"{stats.done:,}{of} records, errors: {errors:,}"
    ]
    linear = all(len(node.inputs) <= 1 for node in job.execution_graph.nodes) and all(
        len(node.outputs) <= 1 for node in job.execution_graph.nodes
    )
    counts = [
        f"{n.label}{f' x{n.parallelism}' if n.parallelism > 1 else ''} "
        f"{(n.records_in if n.kind == 'sink' else n.records_out):,}"
        for n in stats.nodes
    ]
    lines.append("  " + (" → " if linear else ", ").join(counts))
    if calls:
        parts = [
            f"{name} {n:,} (p50 {format_seconds(s.p50)}, p95 {format_seconds(s.p95)})"
            for name, (n, s) in sorted(calls.items())
        ]
        lines.append("  service calls: " + ", ".join(parts))
    return "\n".join(lines)


_SERVICE_HEADERS = (
    "service", "state", "workers", "version", "queued", "in flight", "done", "failed",
    "timed out", "p50", "p95",
)  # fmt: skip
_JOB_HEADERS = ("job", "status", "read", "of", "elapsed", "error")


def _duration(seconds: float | None) -> str:
    # Fixed width, so a table's layout does not depend on how fast things ran.
    return format_seconds(seconds).rjust(7)


class StatusReport:
    """What ``%sage_status`` shows: services, jobs, and the threads the environment owns."""

    def __init__(self, env: BaseEnvironment) -> None:
        self.env = env
        self.stats = env.statistics()
        self.threads = sorted(t.name for t in env.threads())
        self.service_rows = [
            (
                s.name,
                s.state,
                s.workers,
                s.version,
                f"{s.queued:,}",
                f"{s.in_flight:,}",
                f"{s.done:,}",
                f"{s.failed:,}",
                f"{s.timed_out:,}",
                _duration(s.p50),
                _duration(s.p95),
            )
            for s in self.stats.services
        ]
        self.job_rows = [
            (
                j.name,
                j.status,
                f"{j.done:,}",
                "?" if j.total is None else f"{j.total:,}",
                _duration(j.elapsed),
                j.error or "",
            )
            for j in self.stats.jobs[-5:]
        ]

    def _title(self) -> str:
        return f"{self.env!r}"

    def __repr__(self) -> str:
        parts = [self._title()]
        parts.append(
            table_text(_SERVICE_HEADERS, self.service_rows) if self.service_rows else "no services"
        )
        if self.job_rows:
            parts.append(table_text(_JOB_HEADERS, self.job_rows))
        parts.append(
            f"threads: {len(self.threads)}"
            + (f" ({', '.join(self.threads)})" if self.threads else "")
        )
        return "\n\n".join(parts)

    def _repr_html_(self) -> str:
        parts = [f"<b>{html.escape(self._title())}</b>"]
        parts.append(
            table_html(_SERVICE_HEADERS, self.service_rows)
            if self.service_rows
            else "<p>no services</p>"
        )
        if self.job_rows:
            parts.append(table_html(_JOB_HEADERS, self.job_rows))
        parts.append(f"<p>threads: {len(self.threads)}</p>")
        return "\n".join(parts)
