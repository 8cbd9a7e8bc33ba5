"""The rules of rooms (README "Where code lives"), checked with ``ast`` on the source tree.

Every rule is a checker ``check_*(root) -> list[str]`` that reads the project's files under
``root`` and returns one message per violation (``path:line: [rule N] ...``). Each checker is
applied to the real tree, and each is also run on a small planted tree written into ``tmp_path``
that breaks the rule, so a checker that cannot fail shows up as a failing test.

Imports are counted wherever they appear in a module (top level, inside functions, under
``if TYPE_CHECKING``). Relative imports are resolved, and ``from pkg import name`` points at the
module ``pkg.name`` when that module exists in the project, otherwise at ``pkg``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("pipeline", "assets", "resources", "models", "warehouse", "bench", "tests")

# Module prefixes ("x" bans "x" and "x.*"); a trailing "*" bans every top-level name that starts
# with the text before it ("dagster_*" bans dagster_duckdb, dagster_mlflow, ...).
IO_FRAMEWORKS = (
    "dagster",
    "dagster_*",
    "duckdb",
    "mlflow",
    "ccxt",
    "gspread",
    "fastapi",
    "uvicorn",
    "httpx",
    "requests",
    "typer",
    "streamlit",
)
PURE_BANNED = ("pipeline.config", "warehouse", "resources", "assets") + IO_FRAMEWORKS
WAREHOUSE_BANNED = ("pipeline.config", "assets", "resources", "dagster", "dagster_*", "mlflow", "ccxt", "gspread")
CLI_BANNED = ("assets",)
SERVING_BANNED = ("dagster", "dagster_*", "assets")
ASSET_SHARED = ("assets.common", "assets.checks", "assets.keys", "assets.promotion")
ASSET_BODY_MAX = 40
ASSET_DECORATORS = {"asset", "multi_asset"}  # bare or as an attribute (dg.asset, dg.multi_asset)

RULES = {
    1: "pure core and models import no config, warehouse, resources, assets or IO framework",
    2: "warehouse imports no config, assets, resources, dagster, mlflow, ccxt or gspread",
    3: "the CLI imports nothing under assets",
    4: "the REST API and dashboard import no dagster and nothing under assets",
    5: "assets import no mlflow, and other asset modules only for assets.{common,checks,keys,promotion} or their desk's own common",
    6: "no module imports another module's _private name",
    7: "no import cycle among the project's modules",
    8: f"an asset function body is at most {ASSET_BODY_MAX} lines",
    9: "the REST API and dashboard read only the serving snapshot: no resources, CLI, jobs or definitions, no warehouse "
    "module but warehouse.{serving,publish,readers}, no duckdb.connect of their own (warehouse.serving.Snapshot holds "
    "the one read-only connection) and never the writer's warehouse.path",
}


# --------------------------------------------------------------------------- the tree and its imports


@dataclass(frozen=True)
class Module:
    name: str  # dotted: "pipeline.core.simulator", "assets.research" (for __init__.py)
    path: Path
    rel: str  # path relative to the root, for messages
    is_package: bool
    tree: ast.Module


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # the module the statement reaches (see module docstring)
    names: tuple[str, ...]  # for "from x import a, b": ("a", "b"); empty for "import x"


def project_modules(root: Path) -> dict[str, Module]:
    """Every ``.py`` file under the project's packages below ``root``, by dotted module name."""
    modules = {}
    for package in PROJECT_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            modules[name] = Module(name, path, rel.as_posix(), is_package, ast.parse(path.read_text(), str(rel)))
    return modules


def _resolve_base(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: Module, known: set[str] | dict) -> list[Import]:
    """Every import statement anywhere in ``module``, each name resolved to the module it reaches."""
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_base(module, node)
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                found.append(Import(node.lineno, sub if sub in known else base, (a.name,)))
    merged: dict[tuple[int, str], tuple[str, ...]] = {}
    for i in found:  # one entry per (line, module): "from m import a, b" reaching m twice is one import
        merged[i.line, i.target] = merged.get((i.line, i.target), ()) + i.names
    return [Import(line, target, names) for (line, target), names in sorted(merged.items())]


def is_under(name: str, prefixes) -> str | None:
    """The first prefix that bans ``name``, or None."""
    for p in prefixes:
        if p.endswith("*"):
            if name.split(".")[0].startswith(p[:-1]):
                return p
        elif name == p or name.startswith(p + "."):
            return p
    return None


def _in_room(module: Module, room: tuple[str, ...]) -> bool:
    """``room`` holds path patterns relative to the root: "pipeline/core/" (a folder) or a glob."""
    for pattern in room:
        if pattern.endswith("/"):
            if module.rel.startswith(pattern):
                return True
        elif Path(module.rel).match(pattern) and module.rel.count("/") == pattern.count("/"):
            return True
    return False


def _what(imp: Import) -> str:
    return f"{imp.target} ({', '.join(imp.names)})" if imp.names else imp.target


def _by_place(messages: list[str]) -> list[str]:
    """Unique messages ordered by file, then line number."""

    def key(msg):
        rel, line, _ = msg.split(":", 2)
        return rel, int(line), msg

    return sorted(set(messages), key=key)


def check_banned_imports(root: Path, room: tuple[str, ...], banned: tuple[str, ...], rule: int) -> list[str]:
    modules = project_modules(root)
    out = []
    for m in modules.values():
        if not _in_room(m, room):
            continue
        for imp in imports(m, modules):
            if hit := is_under(imp.target, banned):
                out.append(f"{m.rel}:{imp.line}: [rule {rule}] imports {_what(imp)} (banned: {hit}) -- {RULES[rule]}")
    return _by_place(out)


def room_files(root: Path, room: tuple[str, ...]) -> list[str]:
    return [m.rel for m in project_modules(root).values() if _in_room(m, room)]


# --------------------------------------------------------------------------- rules 1-5: who imports what

CORE_ROOM = ("pipeline/core/", "models/")
WAREHOUSE_ROOM = ("warehouse/",)
CLI_ROOM = ("pipeline/cli/", "pipeline/cli*.py")
SERVING_ROOM = ("pipeline/api.py", "pipeline/apps/")
ASSETS_ROOM = ("assets/",)


def check_pure_core(root: Path) -> list[str]:
    return check_banned_imports(root, CORE_ROOM, PURE_BANNED, 1)


def check_warehouse(root: Path) -> list[str]:
    return check_banned_imports(root, WAREHOUSE_ROOM, WAREHOUSE_BANNED, 2)


def check_cli(root: Path) -> list[str]:
    return check_banned_imports(root, CLI_ROOM, CLI_BANNED, 3)


def check_serving(root: Path) -> list[str]:
    return check_banned_imports(root, SERVING_ROOM, SERVING_BANNED, 4)


def _desk_common(module: str) -> str | None:
    """``assets.<desk>.common`` for a module of desk package ``assets.<desk>`` (the desk's shared wiring), else None."""
    parts = module.split(".")
    return ".".join(parts[:2] + ["common"]) if len(parts) == 3 and parts[0] == "assets" else None


def check_assets(root: Path) -> list[str]:
    modules = project_modules(root)
    out = []
    for m in modules.values():
        if not _in_room(m, ASSETS_ROOM):
            continue
        for imp in imports(m, modules):
            if is_under(imp.target, ("mlflow", "dagster_mlflow")):
                out.append(
                    f"{m.rel}:{imp.line}: [rule 5] imports {imp.target}; MLflow is reached only through "
                    f"resources/mlflow_tracking.py -- {RULES[5]}"
                )
            elif (
                is_under(imp.target, ("assets",))
                and imp.target != m.name
                and not is_under(imp.target, ASSET_SHARED)
                and imp.target != _desk_common(m.name)
            ):
                out.append(f"{m.rel}:{imp.line}: [rule 5] imports asset module {_what(imp)} -- {RULES[5]}")
    return _by_place(out)


# --------------------------------------------------------------------------- rule 6: private names


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` -> ["a", "b", "c"]; None when the chain does not start at a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id] + parts[::-1]


def check_private_imports(root: Path) -> list[str]:
    modules = project_modules(root)
    out = []
    for m in modules.values():
        aliases = {}  # local name -> project module it is bound to
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        aliases[a.asname] = a.name
                    else:
                        aliases[a.name.split(".")[0]] = a.name.split(".")[0]
                    if is_under(a.name, PROJECT_PACKAGES) and (
                        priv := [p for p in a.name.split(".") if _is_private(p)]
                    ):
                        out.append(
                            f"{m.rel}:{node.lineno}: [rule 6] imports private module {a.name} ({priv[0]}) -- {RULES[6]}"
                        )
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_base(m, node)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in modules:
                        aliases[a.asname or a.name] = sub
                private = [a.name for a in node.names if _is_private(a.name)]
                if private and is_under(base, PROJECT_PACKAGES) and base != m.name:
                    out.append(
                        f"{m.rel}:{node.lineno}: [rule 6] imports {', '.join(private)} from {base} -- {RULES[6]}"
                    )
        for node in ast.walk(m.tree):
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            chain = _dotted(node.value)
            if not chain or chain[0] not in aliases:
                continue
            owner = ".".join([aliases[chain[0]]] + chain[1:])
            if owner in modules and owner != m.name:
                out.append(f"{m.rel}:{node.lineno}: [rule 6] uses {owner}.{node.attr} -- {RULES[6]}")
    return _by_place(out)


# --------------------------------------------------------------------------- rule 7: import cycles


def import_graph(root: Path) -> tuple[dict[str, dict[str, int]], dict[str, Module]]:
    """module -> {imported project module: first line of the import}."""
    modules = project_modules(root)
    graph = {name: {} for name in modules}
    for m in modules.values():
        for imp in imports(m, modules):
            if imp.target in modules and imp.target != m.name:
                graph[m.name].setdefault(imp.target, imp.line)
    return graph, modules


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components of two or more modules, sorted."""
    index, low, on_stack, stack, comps, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
    return sorted(comps)


def _shortest_cycle(graph: dict[str, dict[str, int]], comp: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, as [a, b, ..., a]."""
    start, inside = comp[0], set(comp)
    parents, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])
                    return path[::-1] + [start]
                if w in inside and w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp  # unreachable for a strongly connected component


def find_cycles(root: Path) -> list[list[str]]:
    graph, _ = import_graph(root)
    return [_shortest_cycle(graph, comp) for comp in strongly_connected(graph)]


def check_no_cycles(root: Path) -> list[str]:
    graph, modules = import_graph(root)
    out = []
    for comp in strongly_connected(graph):
        cycle = _shortest_cycle(graph, comp)
        hops = " -> ".join(f"{a} ({modules[a].rel}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:]))
        out.append(
            f"{modules[cycle[0]].rel}:{graph[cycle[0]][cycle[1]]}: [rule 7] import cycle {cycle}: "
            f"{hops} -> {cycle[-1]}; strongly connected component {comp} with imports "
            + ", ".join(
                f"{a} -> {b} ({modules[a].rel}:{graph[a][b]})" for a in comp for b in sorted(graph[a]) if b in comp
            )
            + f" -- {RULES[7]}"
        )
    return out


# --------------------------------------------------------------------------- rule 8: asset body size


def _is_asset_decorator(dec: ast.expr) -> bool:
    target = dec.func if isinstance(dec, ast.Call) else dec
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
    return name in ASSET_DECORATORS


def asset_body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to ``fn.end_lineno``, inclusive."""
    body = fn.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    if not body:
        return 0
    first = body[0]
    start = min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", [])])
    return fn.end_lineno - start + 1


def check_asset_size(root: Path) -> list[str]:
    out = []
    for m in project_modules(root).values():
        for node in ast.walk(m.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                _is_asset_decorator(d) for d in node.decorator_list
            ):
                n = asset_body_lines(node)
                if n > ASSET_BODY_MAX:
                    out.append(
                        f"{m.rel}:{node.lineno}: [rule 8] asset {node.name} body is {n} lines "
                        f"(> {ASSET_BODY_MAX}) -- {RULES[8]}"
                    )
    return _by_place(out)


# --------------------------------------------------------------------------- rule 9: serving reads the snapshot only

SNAPSHOT_BANNED = ("resources", "pipeline.cli", "pipeline.jobs", "pipeline.definitions", "pipeline.sensors")
SNAPSHOT_WAREHOUSE = ("warehouse.serving", "warehouse.publish", "warehouse.readers")


def check_snapshot_only(root: Path) -> list[str]:
    modules = project_modules(root)
    out = []
    for m in modules.values():
        if not _in_room(m, SERVING_ROOM):
            continue
        connect_names = set()
        for imp in imports(m, modules):
            hit = is_under(imp.target, SNAPSHOT_BANNED)
            if hit is None and is_under(imp.target, ("warehouse",)) and not is_under(imp.target, SNAPSHOT_WAREHOUSE):
                hit = "warehouse (only " + ", ".join(SNAPSHOT_WAREHOUSE) + ")"
            if hit:
                out.append(f"{m.rel}:{imp.line}: [rule 9] imports {_what(imp)} (banned: {hit}) -- {RULES[9]}")
            if imp.target == "duckdb" and "connect" in imp.names:
                connect_names.add("connect")
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Call):
                f = _dotted(node.func)
                if f == ["duckdb", "connect"] or (isinstance(node.func, ast.Name) and node.func.id in connect_names):
                    out.append(f"{m.rel}:{node.lineno}: [rule 9] opens its own DuckDB connection -- {RULES[9]}")
            elif isinstance(node, ast.Attribute) and node.attr == "path":
                v = node.value
                if isinstance(v, ast.Attribute) and v.attr == "warehouse":
                    out.append(f"{m.rel}:{node.lineno}: [rule 9] reads the writer's warehouse.path -- {RULES[9]}")
    return _by_place(out)


# --------------------------------------------------------------------------- the real tree

CHECKERS = {
    1: check_pure_core,
    2: check_warehouse,
    3: check_cli,
    4: check_serving,
    5: check_assets,
    6: check_private_imports,
    7: check_no_cycles,
    8: check_asset_size,
    9: check_snapshot_only,
}


@pytest.mark.parametrize("rule", sorted(CHECKERS), ids=[f"rule{r}" for r in sorted(CHECKERS)])
def test_rule_holds_on_the_tree(rule):
    violations = CHECKERS[rule](REPO)
    assert not violations, f"rule {rule} ({RULES[rule]}) is broken {len(violations)} time(s):\n" + "\n".join(violations)


@pytest.mark.parametrize(
    "room",
    [CORE_ROOM, WAREHOUSE_ROOM, CLI_ROOM, SERVING_ROOM, ASSETS_ROOM],
    ids=lambda room: room[0].strip("/").replace("/", "."),
)
def test_each_room_has_files(room):
    """A checker over an empty room passes vacuously; each room must hold code today."""
    assert room_files(REPO, room), f"no python files in {room}"


def test_packages_resolve_inside_repo():
    import assets
    import models
    import pipeline
    import resources
    import warehouse

    for m in (assets, models, pipeline, resources, warehouse):
        assert Path(m.__file__).resolve().is_relative_to(REPO), m


# --------------------------------------------------------------------------- planted examples


def plant(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def where(violations: list[str]) -> set[str]:
    """``{"path:line rule N"}`` for each message, to compare with what was planted."""
    return {f"{v.split(': [', 1)[0]} {v.split('[', 1)[1].split(']', 1)[0]}" for v in violations}


def test_rule1_catches_planted_violations(tmp_path):
    plant(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/config.py": "",
            "pipeline/core/__init__.py": "",
            "pipeline/core/ok.py": "import numpy as np\nfrom pipeline.core import other\nfrom . import other\n",
            "pipeline/core/other.py": "import pandas\n",
            "pipeline/core/bad.py": (
                "from pipeline import config\n"
                "def f():\n    import duckdb\n"
                "from dagster_duckdb import DuckDBResource\n"
                "from ..config import settings\n"
            ),
            "models/__init__.py": "",
            "models/bad.py": "import sklearn\nfrom warehouse.io import connect\nimport streamlit as st\n",
            "warehouse/__init__.py": "",
            "warehouse/io.py": "",
        },
    )
    assert where(check_pure_core(tmp_path)) == {
        "pipeline/core/bad.py:1 rule 1",
        "pipeline/core/bad.py:3 rule 1",
        "pipeline/core/bad.py:4 rule 1",
        "pipeline/core/bad.py:5 rule 1",
        "models/bad.py:2 rule 1",
        "models/bad.py:3 rule 1",
    }


def test_rule2_catches_planted_violations(tmp_path):
    plant(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/config.py": "",
            "pipeline/core/__init__.py": "",
            "pipeline/core/timeframes.py": "",
            "warehouse/__init__.py": "",
            "warehouse/ok.py": "import duckdb\nimport pandas as pd\nfrom pipeline.core.timeframes import TIMEFRAME_MS\n",
            "warehouse/bad.py": "from pipeline.config import settings\ndef g():\n    import mlflow\nimport dagster as dg\n",
        },
    )
    assert where(check_warehouse(tmp_path)) == {
        "warehouse/bad.py:1 rule 2",
        "warehouse/bad.py:3 rule 2",
        "warehouse/bad.py:4 rule 2",
    }


def test_rule3_catches_planted_violations(tmp_path):
    plant(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/jobs.py": "",
            "pipeline/cli/__init__.py": "",
            "pipeline/cli/common.py": "",
            "pipeline/cli/ok.py": "from pipeline.cli.common import x\nfrom pipeline import jobs\nimport typer\n",
            "pipeline/cli/bad.py": "def h():\n    from assets import keys\n",
            "pipeline/cli_legacy.py": "import assets.market\n",
            "assets/__init__.py": "",
            "assets/keys.py": "",
            "assets/market.py": "",
        },
    )
    assert where(check_cli(tmp_path)) == {"pipeline/cli/bad.py:2 rule 3", "pipeline/cli_legacy.py:1 rule 3"}


def test_rule4_catches_planted_violations(tmp_path):
    plant(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/api.py": "import fastapi\nfrom warehouse.readers import latest\nimport dagster as dg\n",
            "pipeline/apps/__init__.py": "",
            "pipeline/apps/dash.py": "import streamlit\ndef page():\n    from assets.common import md_table\n",
            "pipeline/jobs.py": "import dagster\n",  # not a serving module
        },
    )
    assert where(check_serving(tmp_path)) == {"pipeline/api.py:3 rule 4", "pipeline/apps/dash.py:3 rule 4"}


def test_rule9_catches_planted_violations(tmp_path):
    plant(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/api.py": "from warehouse import serving\nfrom warehouse.io import connect\nimport duckdb\n"
            "con = duckdb.connect('x.duckdb', read_only=True)\n",
            "pipeline/apps/__init__.py": "",
            "pipeline/apps/common.py": (
                "from warehouse.serving import Snapshot\nfrom warehouse import readers, publish\n"
                "from resources.warehouse import WarehouseResource\nfrom duckdb import connect\n"
                "def f(cfg):\n    return connect(cfg.warehouse.path)\n"
                "from pipeline.cli.common import read\nok = cfg.warehouse.serving_path\n"
            ),
            "pipeline/jobs.py": "import duckdb\nduckdb.connect('w.duckdb')\n",  # not a serving module
            "pipeline/cli/__init__.py": "",
            "pipeline/cli/common.py": "",
            "resources/__init__.py": "",
            "resources/warehouse.py": "",
            "warehouse/__init__.py": "",
            "warehouse/io.py": "",
            "warehouse/serving.py": "",
            "warehouse/readers.py": "",
            "warehouse/publish.py": "",
        },
    )
    assert where(check_snapshot_only(tmp_path)) == {
        "pipeline/api.py:2 rule 9",
        "pipeline/api.py:4 rule 9",
        "pipeline/apps/common.py:3 rule 9",
        "pipeline/apps/common.py:6 rule 9",
        "pipeline/apps/common.py:7 rule 9",
    }


def test_rule5_catches_planted_violations(tmp_path):
    plant(
        tmp_path,
        {
            "assets/__init__.py": "",
            "assets/common.py": "",
            "assets/keys.py": "",
            "assets/checks.py": "",
            "assets/promotion.py": "",
            "assets/market.py": "",
            "assets/desk/__init__.py": "",
            "assets/desk/common.py": "",
            "assets/other/__init__.py": "",
            "assets/other/common.py": "",
            "assets/desk/ok.py": (
                "from assets.common import POOL\nfrom assets import keys as K\n"
                "from .. import checks\nimport assets.promotion\nfrom resources.mlflow_tracking import M\n"
                "from assets.desk.common import wiring\n"
            ),
            "assets/desk/bad.py": (
                "def a():\n    import mlflow\n"
                "from assets.market import ohlcv\n"
                "from . import ok\n"
                "from dagster_mlflow import mlflow_tracking\n"
                "from assets.other.common import wiring\n"
            ),  # another desk's wiring
        },
    )
    assert where(check_assets(tmp_path)) == {
        "assets/desk/bad.py:2 rule 5",
        "assets/desk/bad.py:3 rule 5",
        "assets/desk/bad.py:4 rule 5",
        "assets/desk/bad.py:5 rule 5",
        "assets/desk/bad.py:6 rule 5",
    }


def test_rule6_catches_planted_violations(tmp_path):
    plant(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/cli.py": "def _metadata(): ...\ndef _own(): ...\nx = _own()\n",
            "pipeline/helpers.py": "from pipeline.cli import __doc__ as d\n",  # dunder: not private
            "pipeline/cli_setups.py": (
                "from pipeline.cli import _metadata, app\n"
                "import pipeline.cli as cli\n"
                "def f():\n    return cli._own()\n"
                "import pipeline.cli\n"
                "y = pipeline.cli._metadata\n"
                "z = cli.app._private_attr_of_an_object\n"
            ),  # not a module's name
            "tests/__init__.py": "",
            "tests/test_x.py": "from pipeline import cli\nfrom pandas import _libs\nv = cli._own\n",
        },
    )
    assert where(check_private_imports(tmp_path)) == {
        "pipeline/cli_setups.py:1 rule 6",
        "pipeline/cli_setups.py:4 rule 6",
        "pipeline/cli_setups.py:6 rule 6",
        "tests/test_x.py:3 rule 6",
    }


def test_rule7_catches_planted_cycles(tmp_path):
    plant(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/a.py": "from pipeline import b\n",
            "pipeline/b.py": "def f():\n    from .c import thing\n",  # inside a function, relative
            "pipeline/c.py": "import pipeline.a\n",
            "pipeline/d.py": "from pipeline import a\n",  # reaches the cycle, not part of it
            "models/__init__.py": "",
            "models/x.py": "from models import y\n",
            "models/y.py": "from models.x import z\n",
        },
    )
    assert find_cycles(tmp_path) == [
        ["models.x", "models.y", "models.x"],
        ["pipeline.a", "pipeline.b", "pipeline.c", "pipeline.a"],
    ]
    assert where(check_no_cycles(tmp_path)) == {"models/x.py:1 rule 7", "pipeline/a.py:1 rule 7"}


def test_rule8_catches_planted_long_assets(tmp_path):
    def fn(decorator: str, name: str, lines: int, docstring: bool = True, indent: str = "") -> str:
        doc = f'{indent}    """Doc\n{indent}    string."""\n' if docstring else ""
        body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines))
        return f"{indent}{decorator}\n{indent}def {name}():\n{doc}{body}"

    src = (
        "import dagster as dg\nfrom dagster import asset, multi_asset\n\n"
        + fn("@dg.asset(group_name='g')", "fits", 40)
        + fn("@asset", "too_long", 41)
        + fn("@dg.multi_asset(outs={})", "multi_long", 41, docstring=False)
        + fn("@multi_asset", "multi_fits", 40, docstring=False)
        + fn("@staticmethod", "not_an_asset", 99)
        + "def factory():\n"
        + fn("@dg.asset", "inner_long", 41, indent="    ")
        + "    return inner_long\n"
    )
    plant(tmp_path, {"assets/__init__.py": "", "assets/big.py": src})
    tree = ast.parse(src)
    lines = {n.name: n.lineno for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert where(check_asset_size(tmp_path)) == {
        f"assets/big.py:{lines[n]} rule 8" for n in ("too_long", "multi_long", "inner_long")
    }
    sizes = {n.name: asset_body_lines(n) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert sizes["fits"] == 40 and sizes["too_long"] == 41 and sizes["multi_fits"] == 40


def test_planted_rooms_report_files_and_import_resolution(tmp_path):
    plant(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/core/__init__.py": "from . import sim\n",
            "pipeline/core/sim.py": "from .. import config\nfrom ..config import x\nimport numpy\n",
            "pipeline/config.py": "",
            "bench/run.py": "import pipeline.core.sim\n",
        },
    )
    mods = project_modules(tmp_path)
    assert set(mods) == {"pipeline", "pipeline.core", "pipeline.core.sim", "pipeline.config", "bench.run"}
    assert [i.target for i in imports(mods["pipeline.core"], mods)] == ["pipeline.core.sim"]
    assert [i.target for i in imports(mods["pipeline.core.sim"], mods)] == [
        "pipeline.config",
        "pipeline.config",
        "numpy",
    ]
    assert room_files(tmp_path, CORE_ROOM) == ["pipeline/core/__init__.py", "pipeline/core/sim.py"]
    assert room_files(tmp_path / "nowhere", CLI_ROOM) == []
