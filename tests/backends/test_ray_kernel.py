"""``%sage_env --backend ray`` in a real kernel: services from cells run as actors of the test
session's cluster, and a kernel restart runs their ``close()`` and kills them."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebook"))
from notebook_helpers import KernelSession

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("ray_cluster")]

ECHO = """%%sage_service echo
import os
class Echo:
    def process(self, x):
        return (x, os.getpid())
    def close(self):
        open({flag!r}, "w").write("closed")
"""


def actors_in(ray: Any, namespace: str) -> list[str]:
    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == namespace
    )


def test_ray_backend_from_cells_and_restart_kills_the_actors(
    ray_cluster: Any, tmp_path: Path
) -> None:
    ray = ray_cluster
    address = ray.get_runtime_context().gcs_address
    flag = tmp_path / "closed.txt"
    kernel = KernelSession(cwd=str(tmp_path))
    try:
        kernel.execute("%load_ext sage_nb")
        kernel.execute(f"%sage_env --backend ray --address {address}")
        assert kernel.value("type(sage_env).__name__") == "RemoteEnvironment"
        # Re-running the cell reuses the kernel's connection to Ray.
        kernel.execute(f"%sage_env --backend ray --address {address}")
        namespace = kernel.value("sage_env.namespace")

        kernel.execute(ECHO.format(flag=str(flag)))
        value, pid = kernel.value("%sage_call echo 21")
        assert value == 21
        assert pid != kernel.km.provisioner.process.pid  # type: ignore[union-attr]
        assert actors_in(ray, namespace) == ["echo#0"]

        process = kernel.km.provisioner.process  # type: ignore[union-attr]
        start = time.monotonic()
        kernel.km.restart_kernel(now=False)
        print(f"\nrestart with a Ray service: {time.monotonic() - start:.3f} s")
        assert process.returncode == 0  # exited by itself, not killed
        assert flag.read_text() == "closed"  # close() ran in the actor
        assert actors_in(ray, namespace) == []
    finally:
        kernel.shutdown()
