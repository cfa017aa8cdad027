"""Views attach through ``runtime/views.py``: the API asks a registered factory and never
imports the notebook layer itself."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from sage_nb import LocalEnvironment
from sage_nb.runtime import views


@pytest.fixture
def registry() -> Any:
    saved = dict(views._factories)
    yield views
    views._factories.clear()
    views._factories.update(saved)


def test_env_and_job_graph_ask_the_registered_factory(registry: Any) -> None:
    made: list[tuple[Any, Any]] = []

    def factory(env: Any, job: Any = None) -> str:
        made.append((env, job))
        return "a view"

    registry.register_view("graph", factory)
    with LocalEnvironment("v") as env:
        env.from_batch([1]).sink(lambda _: None)
        job = env.submit()
        assert env.graph() == "a view"
        assert job.graph() == "a view"
    assert made == [(env, None), (env, job)]


def test_an_unknown_kind_names_itself(registry: Any) -> None:
    with pytest.raises(LookupError, match="no view of kind 'waterfall' is registered"):
        registry.make_view("waterfall", object())


def test_the_default_views_load_by_name_only_when_asked() -> None:
    code = (
        "import sys\n"
        "from sage_nb import LocalEnvironment\n"
        "env = LocalEnvironment('v')\n"
        "env.from_batch([1]).sink(print)\n"
        "assert 'sage_nb.notebook.widgets' not in sys.modules\n"
        "view = env.graph()\n"
        "print(type(view).__module__, type(view).__name__)\n"
        "env.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sage_nb.notebook.widgets.views GraphView"
