"""Pure code imports no IO framework; the warehouse layer imports no Dagster."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IO_FRAMEWORKS = {"dagster", "dagster_duckdb", "dagster_duckdb_pandas", "dagster_mlflow", "duckdb", "ccxt", "mlflow", "gspread"}


def _imports(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("folder,banned", [("pipeline/core", IO_FRAMEWORKS), ("models", IO_FRAMEWORKS),
                                           ("warehouse", {"dagster", "ccxt", "mlflow", "gspread"})])
def test_layer_imports(folder, banned):
    files = list((REPO / folder).rglob("*.py"))
    assert files, f"no python files under {folder}"
    bad = {str(f.relative_to(REPO)): sorted(_imports(f) & banned) for f in files if _imports(f) & banned}
    assert not bad, f"pure/storage modules import IO frameworks: {bad}"


def test_checker_detects_a_violation(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import duckdb\nfrom dagster import asset\n")
    assert _imports(f) & IO_FRAMEWORKS == {"duckdb", "dagster"}


def test_packages_resolve_inside_repo():
    import assets, models, pipeline, resources, warehouse
    for m in (assets, models, pipeline, resources, warehouse):
        assert Path(m.__file__).resolve().is_relative_to(REPO), m
