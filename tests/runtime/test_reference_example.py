"""The example of the SAGE kernel-runtime-services page, which the reference fails four ways."""

from __future__ import annotations

import subprocess
import sys

from support import ROOT

from sage_nb import Job, LocalEnvironment, MapFunction

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
ENRICHED = "{'user_id': '42', 'profile': {'user_id': '42', 'score': 0.9}}"


def _python() -> str:
    return str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def test_reference_example_in_process(env: LocalEnvironment, capsys) -> None:
    class ProfileService:
        def process(self, user_id: str):
            return {"user_id": user_id, "score": 0.9}

    returned = env.register_service("profile")(ProfileService)
    assert returned is ProfileService  # the decorator hands back the class unchanged

    class Enrich(MapFunction):
        def execute(self, record):
            profile = self.call_service("profile", record["user_id"])
            return {**record, "profile": profile}

    env.from_batch([{"user_id": "42"}]).map(Enrich()).sink(print)
    job = env.submit()

    assert isinstance(job, Job)
    assert job.status == "finished"
    assert capsys.readouterr().out == ENRICHED + "\n"


def test_reference_example_script_prints_and_exits() -> None:
    script = ROOT / "examples" / "reference_example.py"
    done = subprocess.run(
        [_python(), str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert ENRICHED in done.stdout.splitlines()


def test_import_does_not_load_notebook_or_ray_modules() -> None:
    code = (
        "import sage_nb, sys; "
        "loaded = {'IPython', 'ipywidgets', 'ray'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    done = subprocess.run(
        [_python(), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
