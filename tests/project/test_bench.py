"""The benchmark runs end to end (small sizes) and prints every figure as a ratio to its floor.

Only the output's shape is checked: timings are judged by reading the bench, never in tests.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from support import ROOT

FIGURE = re.compile(r"^(?P<label>.+?)\s{2,}\S+ .+ = (?P<ratio>\d+\.\d+)x floor \((?P<floor>.+)\)")


@pytest.mark.slow  # runs every benchmark once: 3-5 s
def test_quick_bench_prints_each_figure_as_a_ratio_to_its_floor() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    figures = [m for m in map(FIGURE.match, lines) if m]
    labels = [m["label"].strip() for m in figures]
    assert len(figures) == 7, done.stdout
    assert labels[0] == "sync call p50" and "with graph+monitor" in labels
    assert all(float(m["ratio"]) > 0 for m in figures)
    assert re.match(r"7 figures in [\d.]+ s; goals missed: ", lines[-1]), lines[-1]
