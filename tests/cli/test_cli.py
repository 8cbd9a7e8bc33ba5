"""The ``trader`` CLI package: command modules share only :mod:`pipeline.cli.common` and never touch assets or
Dagster directly; ``trader setups retro-scan`` runs ``setup_retro_job`` (asset ``signals/setup_retro``)."""

import ast
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "pipeline" / "cli"
COMMAND_MODULES = sorted(p for p in CLI.glob("*.py") if p.name not in {"__init__.py", "__main__.py", "common.py"})
BANNED = ("assets", "pipeline.definitions", "pipeline.jobs", "dagster")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(absolute module, imported names)`` of every import in ``path`` (relative imports resolved in pipeline.cli)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(["pipeline", "cli"][: 3 - node.level] + ([base] if base else []))
            out.append((base, [a.name for a in node.names]))
    return out


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_command_modules_import_only_common_from_the_cli_and_nothing_under_assets():
    assert {p.stem for p in COMMAND_MODULES} == {"main", "research", "options", "setups", "api"}
    bad = {}
    for path in COMMAND_MODULES:
        for module, names in _imports(path):
            cli_mods = {f"{module}.{n}" for n in names} if module == "pipeline.cli" else {module}
            wrong = [m for m in cli_mods if _under(m, "pipeline.cli") and m != "pipeline.cli.common"]
            wrong += [module for b in BANNED if _under(module, b)]
            wrong += [f"{module}.{n}" for n in names if module == "pipeline.cli.common" and n.startswith("_")]
            if wrong:
                bad.setdefault(path.name, []).extend(wrong)
        private = sorted(
            {
                n.attr
                for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name)
                and n.value.id == "common"
                and n.attr.startswith("_")
            }
        )
        if private:
            bad.setdefault(path.name, []).extend(f"common.{a}" for a in private)
    assert not bad, f"CLI command modules import other CLI modules, assets, Dagster or private helpers: {bad}"
    common_imports = [m for m, _ in _imports(CLI / "common.py")]
    assert not [m for m in common_imports if _under(m, "pipeline.cli")], "common must not import command modules"


def test_checker_sees_a_violation(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from pipeline.cli.options import read\nfrom . import setups\nimport assets.keys\n")
    assert [m for m, _ in _imports(f)] == ["pipeline.cli.options", "pipeline.cli", "assets.keys"]


def test_commands_and_jobs():
    import typer

    from pipeline.cli import app
    from pipeline.definitions import defs

    top = typer.main.get_command(app)
    assert set(top.commands) == {
        "run",
        "ingest",
        "status",
        "train",
        "backtest",
        "walk-forward",
        "ui",
        "options",
        "setups",
        "api",
    }
    assert set(top.commands["setups"].commands) == {
        "retro-scan",
        "scan",
        "train-meta",
        "calibrate-meta",
        "tune-thresholds",
        "analyze-results",
        "db-inspect",
    }
    assert set(top.commands["api"].commands) == {"create-token", "list-tokens", "revoke-token", "serve"}
    retro = dg.AssetKey(["signals", "setup_retro"])
    assert defs.resolve_job_def("setup_retro_job").asset_layer.selected_asset_keys == {retro}
    assert retro not in defs.resolve_job_def("main_job").asset_layer.selected_asset_keys  # on demand only


@pytest.mark.integration
def test_retro_scan_runs_setup_retro_job(resources, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app, common
    from pipeline.config import settings
    from pipeline.definitions import ALL_ASSETS
    from pipeline.partitions import full_range_tags

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    cfg = settings().model_copy(deep=True)
    wh, trk = resources["warehouse"], resources["mlflow"]
    cfg.warehouse.path, cfg.warehouse.serving_path, cfg.warehouse.exports_dir = wh.path, wh.serving_path, wh.exports_dir
    cfg.mlflow.tracking_uri, cfg.mlflow.artifact_location = trk.tracking_uri, trk.artifact_location
    cfg.data_dir = resources["files"].data_dir
    monkeypatch.setattr(common, "settings", lambda: cfg)
    inst = common.instance()

    # a small setup-scanner chain: candles -> features -> regimes -> candidates (no champion: the gate is rules only)
    chain = dg.AssetSelection.keys(dg.AssetKey(["signals", "setup_candidates"])).upstream().materializable()
    built = dg.materialize(ALL_ASSETS, selection=chain, resources=resources, instance=inst, tags=full_range_tags())
    assert built.success

    csv = tmp_path / "retro.csv"
    out = CliRunner().invoke(
        app,
        [
            "setups",
            "retro-scan",
            "--start",
            "2023-03-01",
            "--end",
            "2023-04-10",
            "--stride",
            "2",
            "--limit-per-pair",
            "5",
            "--csv",
            str(csv),
        ],
        env={"COLUMNS": "250"},
    )
    assert out.exit_code == 0, out.output
    assert (
        "Signal statuses" in out.output
        and "rules_only): executed trades" in out.output
        and "(table signals.setup_retro)" in out.output
    )

    runs = inst.get_runs(filters=dg.RunsFilter(job_name="setup_retro_job"))
    assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
    assert runs[0].run_config["ops"]["signals__setup_retro"]["config"] == {
        "start": "2023-03-01",
        "end": "2023-04-10",
        "stride": 2,
        "limit_per_pair": 5,
    }
    with common.open_readonly() as con:
        retro = con.execute("SELECT * FROM signals.setup_retro").df()
    assert 0 < len(retro) <= 5 * 4 and retro.groupby(["symbol", "timeframe"]).size().max() <= 5
    ts = pd.to_datetime(retro["ts"], unit="ms")
    assert (ts >= "2023-03-01").all() and (ts < "2023-04-11").all() and retro["gate_mode"].eq("rules_only").all()
    assert f"wrote {len(retro)} rows to {csv}" in out.output.replace("\n", "")
    written = pd.read_csv(csv)
    assert written["candidate_id"].tolist() == retro["candidate_id"].tolist()
    assert written["status"].tolist() == retro["status"].tolist() and list(written.columns) == list(retro.columns)
    event = inst.get_latest_materialization_event(dg.AssetKey(["signals", "setup_retro"]))
    assert event.run_id == runs[0].run_id and event.asset_materialization.metadata["signals"].value == len(retro)

    # an empty window: exit 0, says so, and the table stays as it was
    out = CliRunner().invoke(app, ["setups", "retro-scan", "--start", "2030-01-01"], env={"COLUMNS": "250"})
    assert out.exit_code == 0 and "no gated signals in that window" in out.output, out.output
    assert len(inst.get_runs(filters=dg.RunsFilter(job_name="setup_retro_job"))) == 2
    assert common.read("SELECT count(*) AS n FROM signals.setup_retro")["n"][0] == len(retro)

    # read-only commands share common.open_readonly and the instance
    out = CliRunner().invoke(app, ["status"], env={"COLUMNS": "250"})
    assert out.exit_code == 0 and "Last candle per partition" in out.output and "BTC/USDT" in out.output, out.output
    failed = {e.check_name for e in built.get_asset_check_evaluations() if not e.passed}  # e.g. real gaps: a warning
    assert all(name in out.output for name in failed) if failed else "All latest asset checks passed." in out.output
