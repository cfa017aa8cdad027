"""``python -m bench [--quick] [--json PATH]``: every figure as a ratio to a floor measured in
this same process. Goals print OK or MISS; a miss never changes the exit status."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import figures, widget_figures
from .report import Figure

STEPS: list[tuple[str, Callable[[figures.Sizes], list[Figure]]]] = [
    ("sync call round trip", figures.sync_call),
    ("async throughput", figures.async_throughput),
    ("pipeline throughput", figures.map_pipeline),
    ("one service call per record", figures.enrich_pipeline),
    ("widget overhead", widget_figures.widget_overhead),
]


def _header(quick: bool) -> tuple[str, dict[str, Any]]:
    cpus = os.cpu_count() or 0
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = list(range(cpus))
    pinned = len(allowed) < cpus
    where = f"pinned to CPU {allowed}" if pinned else "not pinned"
    meta = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpus": cpus,
        "affinity": allowed,
        "pinned": pinned,
        "quick": quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = (
        f"sage_nb bench: Python {meta['python']}, {where} "
        f"({len(allowed)} of {cpus} CPUs usable){', --quick' if quick else ''}\n"
        "every figure is sage_nb / floor measured in this process (medians over interleaved rounds)"
    )
    return text, meta


def _leftover_threads(timeout: float = 2.0) -> list[str]:
    """Threads other than the main one still alive after everything was closed."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [t for t in threading.enumerate() if t is not threading.main_thread()]
        if not alive or time.monotonic() > deadline:
            return [t.name for t in alive]
        alive[0].join(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    args = parser.parse_args(argv)

    sizes = figures.Sizes.quick() if args.quick else figures.Sizes()
    header, meta = _header(args.quick)
    print(header, flush=True)
    results: list[Figure] = []
    started = time.perf_counter()
    for _title, step in STEPS:
        for fig in step(sizes):
            results.append(fig)
            print(fig.line(), flush=True)
    meta["seconds"] = round(time.perf_counter() - started, 2)
    missed = [f.label for f in results if f.ok is False]
    print(
        f"{len(results)} figures in {meta['seconds']:.1f} s; goals missed: "
        f"{', '.join(missed) if missed else 'none'}"
    )
    leftover = _leftover_threads()
    if leftover:
        print(f"warning: threads still alive at exit: {leftover}", file=sys.stderr)
    meta["leftover_threads"] = leftover
    if args.json is not None:
        payload = {"meta": meta, "sizes": asdict(sizes), "figures": [f.as_dict() for f in results]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
