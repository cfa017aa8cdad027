"""Benchmarks of sage_nb, each stated as a ratio to a floor measured in the same process.

Run ``python -m bench`` (``--quick`` for a smoke test, ``--json PATH`` to keep the numbers).
``bench.floors`` holds the raw baselines (plain threads, queues and loops), ``bench.runtime``
the sage_nb measurements, ``bench.report`` the figures and their formatting. See README.md.
"""

__all__: list[str] = []
