"""``%sage_env --backend ray`` in a real kernel: services from cells run as actors (of the test
session's cluster, or of a local cluster the kernel starts), and a kernel restart runs their
``close()``, kills them and exits by itself, without waiting for the kernel manager's kill."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebook"))
from notebook_helpers import KernelSession

# kernel: each test starts a KernelSession itself (no fixture says so); ray: ray_cluster.
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.kernel,
    pytest.mark.usefixtures("ray_cluster"),
]

ECHO = """%%sage_service echo
import os
class Echo:
    def process(self, x):
        return (x, os.getpid())
    def close(self):
        open({flag!r}, "w").write("closed")
"""


def _ray_processes_of(gcs_address: str) -> list[str]:
    """Command lines of processes still serving the Ray cluster at ``gcs_address``."""
    port = gcs_address.rsplit(":", 1)[1]
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ray" in cmd and port in cmd:
            found.append(cmd)
    return found


def actors_in(ray: Any, namespace: str) -> list[str]:
    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == namespace
    )


@pytest.mark.parametrize("cluster", ["joined", "started by the kernel"])
def test_ray_backend_from_cells_and_restart_kills_the_actors(
    ray_cluster: Any, tmp_path: Path, cluster: str
) -> None:
    ray = ray_cluster
    line = "%sage_env --backend ray"
    if cluster == "joined":
        line += f" --address {ray.get_runtime_context().gcs_address}"
    flag = tmp_path / "closed.txt"
    kernel = KernelSession(cwd=str(tmp_path))
    try:
        kernel.execute("%load_ext sage_nb")
        kernel.execute(line, timeout=120)
        assert kernel.value("type(sage_env).__name__") == "RemoteEnvironment"
        # Re-running the cell reuses the kernel's connection to Ray.
        kernel.execute(line)
        namespace = kernel.value("sage_env.namespace")
        address = kernel.value("__import__('ray').get_runtime_context().gcs_address")
        assert (address == ray.get_runtime_context().gcs_address) == (cluster == "joined")

        kernel.execute(ECHO.format(flag=str(flag)))
        value, pid = kernel.value("%sage_call echo 21")
        assert value == 21
        assert pid != kernel.km.provisioner.process.pid  # type: ignore[union-attr]
        assert kernel.value("sage_env.actors()") == ["echo#0"]
        if cluster == "joined":
            assert actors_in(ray, namespace) == ["echo#0"]

        process = kernel.km.provisioner.process  # type: ignore[union-attr]
        start = time.monotonic()
        kernel.km.restart_kernel(now=False)
        print(f"\nrestart with a Ray service: {time.monotonic() - start:.3f} s")
        if cluster == "joined":
            assert process.returncode == 0  # exited by itself, not killed
        # else: stopping the cluster the kernel started takes Ray about 1.4 s more (it waits
        # for each of its processes), so on a busy machine the kernel manager's SIGTERM, sent
        # 2.5 s after the request, may arrive first; nothing is left behind either way.
        assert flag.read_text() == "closed"  # close() ran in the actor
        if cluster == "joined":
            assert actors_in(ray, namespace) == []
        else:  # the kernel's cluster is gone, and with it every process it started
            assert not _ray_processes_of(address)
    finally:
        kernel.shutdown()
