"""The lanes stay honest: every test carries the markers of what it starts, so ``make fast``
(``pytest -m "not slow and not kernel and not browser and not ray"``) starts no kernel, Ray
cluster or browser and still runs the unit tests, while plain ``pytest`` runs everything.

The markers come from tests/conftest.py (by directory, fixture and notebook) and from the test
files (``slow``; ``kernel`` where a test starts a ``KernelSession`` itself; ``ray`` on the
"ray" param of tests/backends). Here they are checked against the evidence that
``lanes_probe.record()`` gathers for each test: its path, the fixtures it uses, its backend
param, whether its module can start kernels, and for a notebook what its code says.

In a run of the whole suite (``pytest``, ``make fast``) this reads what that run collected,
before ``-m`` deselected anything. Run on its own, it collects the suite in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lanes_probe import OUT, record
from support import COLLECTED, ROOT

HERE = Path(__file__).resolve().parent
#: The lane markers: ``make fast`` deselects every one.
LANES = {"slow", "kernel", "browser", "ray"}
#: Fixtures that start a kernel (tests/notebook/conftest.py) or JupyterLab (tests/browser/).
KERNEL_FIXTURES = {"kernel", "fresh_kernel", "lab"}
#: Fixtures that start or join the Ray cluster (tests/backends/conftest.py).
RAY_FIXTURES = {"ray_cluster", "ray_env"}
#: The directories whose every test belongs in the fast lane (STYLE.md: "fast, no IPython").
FAST_DIRS = ("tests/runtime/",)
#: Directories the fast lane must reach into: the unit tests of each layer.
COVERED_DIRS = (
    "tests/runtime/",
    "tests/reliability/",
    "tests/backends/",
    "tests/notebook/",
    "tests/widgets/",
    "tests/project/",
)


def collect_in_a_subprocess(directory: Path) -> list[dict[str, Any]]:
    """Collect the whole suite (``--collect-only``) with ``lanes_probe`` recording each test."""
    out = directory / "collected.json"
    path = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]  # -p finds lanes_probe
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), **{OUT: str(out)})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "--assert=plain",  # nothing runs: no need to rewrite asserts (seconds saved)
            "--continue-on-collection-errors",  # a broken module fails in its own run
            "-p",
            "no:cacheprovider",
            "-p",
            "lanes_probe",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.exists(), f"the collection wrote nothing:\n{done.stdout[-3000:]}{done.stderr}"
    return json.loads(out.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def collected(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    """One ``lanes_probe.record()`` per test of the suite."""
    config = request.config
    items = config.stash.get(COLLECTED, None)
    if items is not None and config.args_source is pytest.Config.ArgsSource.TESTPATHS:
        return [record(item) for item in items]
    return collect_in_a_subprocess(tmp_path_factory.mktemp("lanes"))


@pytest.fixture(scope="module")
def fast(collected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tests ``make fast`` runs."""
    return [r for r in collected if not LANES & set(r["markers"])]


def notebook_uses_ray(path: str) -> bool:
    cells = json.loads((ROOT / path).read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return re.search(r"\bray\b|RemoteEnvironment", code) is not None


def needed(r: dict[str, Any]) -> set[str]:
    """The lane markers that the evidence about a test calls for."""
    markers: set[str] = set()
    if r["path"].startswith("tests/browser/"):
        markers |= {"browser", "kernel"}  # JupyterLab runs the page's kernel
    if r["kind"] == "IPyNbCell":  # nbval runs the notebook in a kernel
        markers.add("kernel")
        if notebook_uses_ray(r["path"]):
            markers.add("ray")
    if KERNEL_FIXTURES & set(r["fixtures"]) or r["starts_kernels"]:
        markers.add("kernel")
    if RAY_FIXTURES & set(r["fixtures"]) or r["backend"] == "ray":
        markers.add("ray")
    return markers


def test_every_test_carries_the_markers_of_what_it_starts(
    collected: list[dict[str, Any]],
) -> None:
    wanted = {r["nodeid"]: needed(r) for r in collected}
    # The evidence finds each kind, or this test would pass on an empty or blind collection.
    assert set().union(*wanted.values()) == {"browser", "kernel", "ray"}
    missing = {
        r["nodeid"]: sorted(wanted[r["nodeid"]] - set(r["markers"]))
        for r in collected
        if wanted[r["nodeid"]] - set(r["markers"])
    }
    assert not missing, f"tests without the markers of what they start: {missing}"


def test_the_fast_lane_keeps_the_unit_tests(
    collected: list[dict[str, Any]], fast: list[dict[str, Any]]
) -> None:
    heavy = [r["nodeid"] for r in collected if r["path"].startswith(FAST_DIRS) and r not in fast]
    assert not heavy, f"tests under {FAST_DIRS} must stay in the fast lane: {heavy}"
    reached = {d for d in COVERED_DIRS for r in fast if r["path"].startswith(d)}
    assert reached == set(COVERED_DIRS), f"the fast lane misses {set(COVERED_DIRS) - reached}"
    threads = [r for r in collected if r["backend"] == "threads"]
    assert threads and all(r in fast for r in threads), "the threads half of the contract suite"


def test_make_fast_deselects_every_lane(request: pytest.FixtureRequest) -> None:
    registered = {line.split(":")[0].strip() for line in request.config.getini("markers")}
    assert registered >= LANES, f"pyproject.toml registers {sorted(registered)}"
    recipe = re.search(r"^fast:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no fast target"
    expression = re.fullmatch(r'(?:\w+=\S* )*\$\(PY\) -m pytest -m "([^"]+)"', recipe.group(1))
    assert expression, f"make fast runs {recipe.group(1)!r}"
    terms = expression.group(1).split(" and ")
    assert sorted(terms) == sorted(f"not {m}" for m in LANES), expression.group(1)
