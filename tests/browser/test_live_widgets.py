"""In real JupyterLab: %sage_graph shows the pipeline, %sage_monitor's counters rise while a job
runs in the background, a service result containing <script> is shown as text, and
%sage_submit's progress bar ends at 100% above the job's summary."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

KERNEL_IDLE = """() => {
  const w = window.jupyterapp?.shell.currentWidget;
  return w?.sessionContext?.session?.kernel?.status === 'idle';
}"""


FIRST_WAITING_CELL = 5
RUN_ABOVE = """(index) => {
  const panel = window.jupyterapp.shell.currentWidget;
  panel.content.activeCellIndex = index;
  return window.jupyterapp.commands.execute('notebook:run-all-above');
}"""
RUN_REST = """(index) => {
  const panel = window.jupyterapp.shell.currentWidget;
  panel.content.activeCellIndex = index;
  return window.jupyterapp.commands.execute('notebook:run-all-below');
}"""


def _done(page: Any) -> int:
    text = page.locator(".sage-monitor [data-service=profile] .sage-done").inner_text()
    return int(re.sub(r"\D", "", text) or 0)


def test_graph_and_monitor_update_live(lab: tuple[str, str, Path], browser: Any) -> None:
    base, token, _ = lab
    page = browser.new_page()
    page.goto(f"{base}/lab/tree/live_widgets.ipynb?reset&token={token}")
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)
    # The first five cells start the background job and open the views. The last two wait
    # for it and run %sage_submit: they keep the kernel busy, and the widget manager's
    # first load waits for an idle kernel, so they run only once the views are checked.
    page.evaluate(RUN_ABOVE, FIRST_WAITING_CELL)

    graph = page.locator(".jp-OutputArea-output .sage-graph")
    expect(graph).to_be_visible(timeout=60_000)
    for label in ("from_batch", "map(Enrich)", "map(lambda) x2", "sink(append)", "profile"):
        expect(graph).to_contain_text(label)
    expect(graph.locator("path.sage-edge-call")).to_have_count(1)

    monitor = page.locator(".jp-OutputArea-output .sage-monitor")
    expect(monitor).to_be_visible(timeout=60_000)
    seen: list[int] = []
    for _ in range(60):  # the job runs for seconds; the monitor must tick while it does
        seen.append(_done(page))
        if len(set(seen)) >= 3:
            break
        page.wait_for_timeout(200)
    assert len(set(seen)) >= 3 and seen == sorted(seen), f"monitor did not rise live: {seen}"

    # A result containing <script> is text on the page, and it never ran.
    expect(monitor).to_contain_text("<script>window.__pwned=1</script>", timeout=30_000)
    assert page.evaluate("window.__pwned") is None

    # The job finishes and the graph shows the final counts.
    expect(graph).to_contain_text("in 3,000 · out 3,000", timeout=60_000)

    # Then %sage_submit runs the pipeline again: its progress counts up to the total per
    # source and stays, as static HTML once the job ended, above the summary.
    page.evaluate(RUN_REST, FIRST_WAITING_CELL)
    progress = page.locator(".jp-OutputArea-output .sage-progress")
    expect(progress).to_be_visible(timeout=60_000)
    expect(progress).to_contain_text("from_batch")
    expect(progress).to_contain_text("3,000 / 3,000 (100.0%)", timeout=60_000)
    expect(progress).to_contain_text(": finished")
    summary = page.locator(".jp-OutputArea-output", has_text="✓ job '")
    expect(summary).to_contain_text("3,000 of 3,000 records", timeout=30_000)
    expect(page.locator("text=Error displaying widget")).to_have_count(0)
    # The notebook scrolls inside the page: make it tall enough to show every output at once.
    page.set_viewport_size({"width": 1400, "height": 2600})
    page.evaluate("() => { document.querySelector('.jp-WindowedPanel-outer').scrollTop = 0; }")
    page.screenshot(path=str(Path(__file__).parent / "last-run.png"), full_page=True)
    page.close()
