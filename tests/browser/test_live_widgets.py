"""In real JupyterLab: the graph shows the pipeline, the monitor's counters rise while a job
runs in the background, and a service result containing <script> is shown as text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

KERNEL_IDLE = """() => {
  const w = window.jupyterapp?.shell.currentWidget;
  return w?.sessionContext?.session?.kernel?.status === 'idle';
}"""


def _done(page: Any) -> int:
    text = page.locator(".sage-monitor [data-service=profile] .sage-done").inner_text()
    return int(re.sub(r"\D", "", text) or 0)


def test_graph_and_monitor_update_live(lab: tuple[str, str, Path], browser: Any) -> None:
    base, token, _ = lab
    page = browser.new_page()
    page.goto(f"{base}/lab/tree/live_widgets.ipynb?reset&token={token}")
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

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
    page.screenshot(path=str(Path(__file__).parent / "last-run.png"), full_page=True)
    page.close()
