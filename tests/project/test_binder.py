"""The Binder configuration is valid: repo2docker reads it and writes the Dockerfile it would
build (``--no-build``: no Docker needed), installing this package on a pinned Python."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from support import ROOT


def test_repo2docker_accepts_the_binder_configuration() -> None:
    exe = shutil.which("repo2docker", path=str(Path(sys.executable).parent))
    assert exe is not None, "repo2docker is installed by the test extra"
    done = subprocess.run(
        [exe, "--no-build", "--debug", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dockerfile = done.stdout + done.stderr
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    assert "python3.11" in dockerfile or "python=3.11" in dockerfile
    requirements = (ROOT / "binder" / "requirements.txt").read_text().split()
    assert "-e" in requirements and ".[notebook,ray]" in requirements
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
