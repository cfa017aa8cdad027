"""sage_nb.compat.aliases: SAGE's module paths resolve to sage_nb, only where installed.

Most tests run in this process and uninstall the hook before they end (the ``hook`` fixture
checks that no alias module is left in ``sys.modules``); one starts a fresh interpreter to show
that importing sage_nb installs nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from sage_nb.compat import aliases

#: Whether this machine has a real ``sage`` (SAGE, SageMath): the hook then needs force=True.
REAL_SAGE = importlib.util.find_spec("sage") is not None
#: sage_nb.compat's names that are the hook's own API, not SAGE's.
HOOK_NAMES = {"install", "installed", "uninstall"}
#: The paths SAGE programs import from (SAGE 0.2.x and 0.3.x), which the table must cover.
REQUIRED = [
    "sage",
    "sage.runtime",
    "sage.foundation",
    "sage.stream",
    "sage.core",
    "sage.core.api",
    "sage.core.api.function",
    "sage.kernel",
    "sage.kernel.api",
    "sage.kernel.api.local_environment",
    "sage.kernel.api.remote_environment",
    "sage.kernel.api.flownet_environment",
    "sage.kernel.api.datastream",
    "sage.kernel.api.connected_streams",
    "sage.kernel.api.service",
    "sage.kernel.api.service.base_service",
    "sage.kernel.api.function.map_function",
    "sage.common",
    "sage.common.core",
    "sage.common.core.functions",
    *(
        f"sage.common.core.functions.{x}_function"
        for x in [
            "map",
            "filter",
            "flatmap",
            "sink",
            "source",
            "batch",
            "keyby",
            "comap",
            "join",
            "base",
            "future",
        ]
    ),
    "sage.common.utils",
    "sage.common.utils.logging",
    "sage.common.utils.logging.custom_logger",
    "sage.platform",
    "sage.platform.service",
    "sage.kernel.runtime",
    "sage.kernel.runtime.communication",
    "sage.kernel.runtime.communication.packet",
    "sage.kernel.utils",
    "sage.kernel.utils.ray",
    "sage.kernel.utils.ray.ray_utils",
]


def alias_modules() -> list[str]:
    return sorted(
        name
        for name, module in sys.modules.items()
        if isinstance(getattr(module, "__loader__", None), aliases.AliasFinder)
    )


def sage_modules() -> set[str]:
    return {name for name in sys.modules if name == "sage" or name.startswith("sage.")}


@pytest.fixture
def clean() -> Iterator[None]:
    """The test leaves the hook uninstalled and no new ``sage*`` module behind."""
    assert not aliases.installed()
    before = sage_modules()
    yield
    aliases.uninstall()
    for name in sage_modules() - before:
        del sys.modules[name]
    assert alias_modules() == []


@pytest.fixture
def hook(clean: None) -> None:
    """The aliases, installed for the test."""
    aliases.install(force=REAL_SAGE)


@pytest.fixture
def real_sage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A made-up real ``sage`` package (``sage.REAL``, a ``sage.kernel``), importable."""
    site = tmp_path / "site"
    (site / "sage" / "kernel").mkdir(parents=True)
    (site / "sage" / "__init__.py").write_text("REAL = True\n")
    (site / "sage" / "kernel" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))  # invalidates the import caches too
    return site


def expected_names(path: str) -> list[str]:
    listed = aliases.SAGE_MODULES[path]
    if listed is None:
        compat = importlib.import_module("sage_nb.compat")
        return [name for name in compat.__all__ if name not in HOOK_NAMES]
    return list(listed)


def test_the_table_covers_sage_s_paths_and_each_parent() -> None:
    table = aliases.SAGE_MODULES
    assert [path for path in REQUIRED if path not in table] == []
    parents = {path.rsplit(".", 1)[0] for path in table if "." in path}
    assert sorted(parents - table.keys()) == []


@pytest.mark.parametrize("path", sorted(aliases.SAGE_MODULES))
def test_each_path_imports_and_provides_its_names(hook: None, path: str) -> None:
    compat = importlib.import_module("sage_nb.compat")
    names = expected_names(path)
    missing = [name for name in names if not hasattr(compat, name)]
    assert missing == [], f"{path} provides {missing}, which sage_nb.compat does not export"

    module = importlib.import_module(path)
    assert module.__all__ == names
    assert {name: getattr(module, name) for name in names} == {
        name: getattr(compat, name) for name in names
    }
    assert module.__path__ == []  # submodules come to the finder
    assert module.__doc__ is not None and "sage_nb's stand-in" in module.__doc__
    namespace: dict[str, object] = {}
    exec(f"from {path} import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == sorted(names)


def test_from_sage_core_api_import_local_environment_and_map_function(hook: None) -> None:
    import sage_nb.compat as compat

    namespace: dict[str, object] = {}
    exec("from sage.core.api import LocalEnvironment, MapFunction", namespace)
    assert namespace["LocalEnvironment"] is compat.LocalEnvironment
    assert namespace["MapFunction"] is compat.MapFunction


@pytest.mark.parametrize(
    ("path", "unknown"),
    [
        ("sage.nope", "sage.nope"),
        ("sage.kernel.api.nope", "sage.kernel.api.nope"),
        ("sage.foundation.x.y", "sage.foundation.x"),
    ],
)
def test_an_unknown_submodule_is_not_found_and_says_so(hook: None, path: str, unknown: str) -> None:
    with pytest.raises(ModuleNotFoundError) as caught:
        importlib.import_module(path)
    assert caught.value.name == unknown
    message = str(caught.value)
    assert repr(unknown) in message
    assert "sage_nb.compat does not provide it" in message
    assert "docs/sage-compat.md" in message


def test_an_unlisted_attribute_is_an_attribute_error(hook: None) -> None:
    import sage.stream

    assert not hasattr(sage.stream, "MapFunction")  # listed for other modules, not this one


def test_a_listed_name_the_compat_module_lacks_is_an_import_error_naming_it(
    clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = types.ModuleType("fake_compat")
    fake.__all__ = ["LocalEnvironment", "install"]  # type: ignore[attr-defined]
    fake.LocalEnvironment = object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_compat", fake)
    monkeypatch.setattr(aliases, "COMPAT_MODULE", "fake_compat")
    aliases.install(force=REAL_SAGE)

    import sage
    import sage.runtime

    assert sage.__all__ == ["LocalEnvironment"]  # every name but the hook's own
    assert sage.runtime.LocalEnvironment is fake.LocalEnvironment  # type: ignore[attr-defined]
    with pytest.raises(ImportError, match=r"'StopSignal' from 'sage.runtime': fake_compat does"):
        exec("from sage.runtime import StopSignal", {})
    with pytest.raises(ImportError, match=r"from 'sage.runtime': fake_compat does not provide"):
        exec("from sage.runtime import *", {})


def test_install_is_idempotent_and_puts_the_finder_first(clean: None) -> None:
    aliases.install(force=REAL_SAGE)
    aliases.install(force=REAL_SAGE)
    finders = [f for f in sys.meta_path if isinstance(f, aliases.AliasFinder)]
    assert len(finders) == 1 and sys.meta_path[0] is finders[0]
    assert aliases.installed()


def test_uninstall_restores_the_import_system(clean: None) -> None:
    meta_path = list(sys.meta_path)
    aliases.install(force=REAL_SAGE)
    import sage.kernel.api.datastream

    assert "sage.kernel.api.datastream" in alias_modules()
    aliases.uninstall()
    assert not aliases.installed()
    assert sys.meta_path == meta_path
    assert alias_modules() == []
    aliases.uninstall()  # not installed: nothing to do
    if not REAL_SAGE:
        with pytest.raises(ModuleNotFoundError):
            import sage  # noqa: F401


def test_install_refuses_a_real_sage_unless_forced(clean: None, real_sage: Path) -> None:
    with pytest.raises(RuntimeError, match=r"real 'sage' package.*SageMath.*force=True") as e:
        aliases.install()
    assert str(real_sage) in str(e.value)
    assert not aliases.installed()

    aliases.install(force=True)
    import sage
    import sage.kernel

    assert not hasattr(sage, "REAL")
    assert isinstance(sage.kernel.__loader__, aliases.AliasFinder)
    aliases.uninstall()
    real = importlib.import_module("sage")
    assert real.REAL is True


def test_forcing_replaces_a_real_sage_already_imported_and_uninstall_puts_it_back(
    clean: None, real_sage: Path
) -> None:
    real = importlib.import_module("sage")
    real_kernel = importlib.import_module("sage.kernel")
    with pytest.raises(RuntimeError, match="real 'sage'"):
        aliases.install()

    aliases.install(force=True)
    assert "sage" not in sys.modules
    assert importlib.import_module("sage") is not real
    assert importlib.import_module("sage.kernel").__all__ == []
    aliases.uninstall()
    assert sys.modules["sage"] is real and sys.modules["sage.kernel"] is real_kernel


def test_importing_sage_nb_installs_nothing(tmp_path: Path) -> None:
    code = (
        "import sys, sage_nb, sage_nb.compat, sage_nb.compat.aliases as aliases\n"
        "finders = [f for f in sys.meta_path if isinstance(f, aliases.AliasFinder)]\n"
        "print(aliases.installed(), finders)\n"
        "try:\n"
        "    import sage\n"
        "except ModuleNotFoundError:\n"
        "    print('no sage')\n"
        "else:\n"
        "    print('a real sage:', sage.__spec__.loader)\n"
    )
    # An empty working directory: no stray sage/ directory can be imported from there.
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == "False []"
    if REAL_SAGE:
        assert "sage_nb" not in second
    else:
        assert second == "no sage"
