"""The tree stays formatted and lint-clean with the project's ruff settings (``[tool.ruff]`` in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def ruff():
    if _ruff("--version").returncode != 0 and shutil.which("ruff") is None:
        pytest.fail("ruff is not installed: `pip install -e .[test]` installs it")


def test_tree_is_formatted(ruff):
    r = _ruff("format", "--check", ".")
    assert r.returncode == 0, f"run `ruff format .`:\n{r.stdout}{r.stderr}"


def test_tree_is_lint_clean(ruff):
    r = _ruff("check", ".")
    assert r.returncode == 0, f"run `ruff check --fix .`:\n{r.stdout}{r.stderr}"


def test_ruff_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx=1\n")
    assert (
        subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F401", str(bad)], capture_output=True
        ).returncode
        == 1
    )
    assert (
        subprocess.run(
            [sys.executable, "-m", "ruff", "format", "--isolated", "--check", str(bad)], capture_output=True
        ).returncode
        == 1
    )
