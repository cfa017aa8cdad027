"""The README's layout section names every package of sage_nb and every module in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def layout_entries(readme: str) -> dict[str, set[str]]:
    """``path -> words`` for each entry of the Layout block (continuation lines included)."""
    section = readme.split("## Layout", 1)[1]
    block = section.split("```", 2)[1]
    entries: dict[str, set[str]] = {}
    current = None
    for line in block.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            current, _, rest = line.partition(" ")
            entries[current] = set()
        else:
            rest = line
        assert current is not None
        entries[current] |= set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", rest))
    return entries


def test_the_layout_names_every_package_and_module() -> None:
    entries = layout_entries((ROOT / "README.md").read_text())
    packages = sorted(
        p.parent for p in (ROOT / "sage_nb").rglob("__init__.py") if p.parent != ROOT / "sage_nb"
    )
    missing = {}
    for package in packages:
        rel = f"{package.relative_to(ROOT)}/"
        if rel == "sage_nb/backends/":  # a namespace of backends: ray/ is listed
            continue
        assert rel in entries, f"README's layout has no entry for {rel}"
        modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
        if modules - entries[rel]:
            missing[rel] = sorted(modules - entries[rel])
    assert missing == {}


def test_every_path_in_the_layout_exists() -> None:
    entries = layout_entries((ROOT / "README.md").read_text())
    assert [path for path in entries if not (ROOT / path).exists()] == []
