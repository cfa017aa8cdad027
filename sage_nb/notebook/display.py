"""Text and HTML views of runtime state, for magics and ``repr`` in notebooks.

Every view has a plain-text form (terminals, nbval, saved notebooks without HTML) and an HTML
form; every value put in HTML is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..api.environment import BaseEnvironment
    from ..runtime.job_manager import Job

__all__ = ["StatusReport", "format_seconds", "progress_line", "table_html", "table_text"]


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def table_text(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f'<table class="sage-nb {css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


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


_SERVICE_HEADERS = (
    "service", "state", "workers", "version", "queued", "in flight", "done", "failed",
    "timed out", "p50", "p95",
)  # fmt: skip
_JOB_HEADERS = ("job", "status", "read", "of", "elapsed", "error")


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
                s.queued,
                s.in_flight,
                s.done,
                s.failed,
                s.timed_out,
                format_seconds(s.p50),
                format_seconds(s.p95),
            )
            for s in self.stats.services
        ]
        self.job_rows = [
            (
                j.name,
                j.status,
                f"{j.done:,}",
                "?" if j.total is None else f"{j.total:,}",
                format_seconds(j.elapsed),
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
