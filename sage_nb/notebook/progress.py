"""What ``%sage_submit`` shows while it waits for a job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .display import ProgressReport

if TYPE_CHECKING:
    from ..runtime.job_manager import Job
    from .widgets.views import ProgressView

__all__ = ["SubmitProgress"]


class SubmitProgress:
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
