"""In real JupyterLab, a newcomer's Run All of tutorial 08 (a SAGE program brought into a
notebook unchanged): every cell runs, the program's graph is drawn with its operators and the
service it called, the swap completes, and no widget fails to display."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from support import ROOT

TUTORIAL = ROOT / "notebooks" / "08-bringing-sage-programs.ipynb"

RUN_ALL = "() => window.jupyterapp.commands.execute('notebook:run-all-cells')"
KERNEL_IDLE = """() => {
  const w = window.jupyterapp?.shell.currentWidget;
  return w?.sessionContext?.session?.kernel?.status === 'idle';
}"""


def test_run_all_of_the_sage_tutorial(lab: tuple[str, str, Path], browser: Any) -> None:
    base, token, root = lab
    shutil.copy(TUTORIAL, root / TUTORIAL.name)
    page = browser.new_page()
    page.goto(f"{base}/lab/tree/{TUTORIAL.name}?reset&token={token}")
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)
    page.evaluate(RUN_ALL)

    outputs = page.locator(".jp-OutputArea-output")
    expect(outputs.filter(has_text="resolve to sage_nb.compat")).to_have_count(1, timeout=60_000)
    expect(outputs.filter(has_text="review 1: +4 (lexicon-v1)")).to_have_count(1, timeout=60_000)

    graph = page.locator(".jp-OutputArea-output .sage-graph")
    expect(graph).to_be_visible(timeout=60_000)
    for label in ("from_batch", "map(Score)", "sink(ResultCollectorSink)", "sentiment"):
        expect(graph).to_contain_text(label)

    # The streaming job's service is swapped while it runs; then everything is closed.
    expect(outputs.filter(has_text="models, in order: ['lexicon-v1', 'lexicon-v2']")).to_have_count(
        1, timeout=90_000
    )
    expect(outputs.filter(has_text="no record lost: True")).to_have_count(1)
    expect(outputs.filter(has_text="No module named 'sage'")).to_have_count(1, timeout=60_000)
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    expect(page.locator(".jp-OutputArea-executeResult .jp-OutputArea-output").last).to_have_text(
        "[]"
    )
    expect(page.locator("text=Error displaying widget")).to_have_count(0)
    expect(
        page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    ).to_have_count(0)
    page.close()
