"""The import contract in pyproject.toml holds on this tree, and fails when a layer is crossed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    # the tree's own packages first on the path, so the copy is what gets analysed
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT), "--no-cache", str(tree / "pyproject.toml")], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=120)


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for name in ("runner", "registry", "components"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_contract_holds_on_this_tree(tmp_path):
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "edge"), [
    ("runner/plan.py", "import components.trainers.sft", "runner.plan -> components.trainers.sft"),
    ("registry/zoo.py", "import runner.store", "registry.zoo -> runner.store"),
    ("components/judges/needle.py", "import runner.store", "components.judges.needle -> runner.store"),
])
def test_contract_fails_when_a_layer_is_crossed(tmp_path, module, line, edge):
    tree = _copy(tmp_path)
    path = tree / module
    text = path.read_text()
    # after the module docstring and `from __future__` line, so the file stays valid Python
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + line + "\n" + rest)
    result = _lint(tree)
    assert result.returncode != 0
    assert edge in result.stdout
