"""The one-way layout: ``brokers/`` is the bottom layer and imports nothing from ``chains/``.

The exchange simulator (``brokers/simulator/``, an app of its own that production does not
install) is the one exception allowed: it prices options with the domain's pure math
(``chains.black76``) and nothing else of ``chains``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIMULATOR = ROOT / "brokers" / "simulator"
SIMULATOR_MAY_USE = {"chains.black76"}


def chains_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of ``chains`` in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "chains":
            names = [f"chains.{alias.name}" for alias in node.names]  # from chains import x
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name == "chains" or name.startswith("chains."):
                found.append((node.lineno, name))
                break
    return found


def test_brokers_imports_nothing_from_chains():
    offending = []
    for path in sorted((ROOT / "brokers").rglob("*.py")):
        for line, name in chains_imports(path):
            if path.is_relative_to(SIMULATOR) and name in SIMULATOR_MAY_USE:
                continue
            offending.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offending, "brokers/ must not import chains/:\n" + "\n".join(offending)


def test_the_check_finds_an_import_of_chains(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\nfrom chains import store\nfrom chains.book import ChainBook\n")
    assert chains_imports(source) == [(2, "chains.store"), (3, "chains.book")]
