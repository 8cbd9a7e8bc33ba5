"""The ``trader`` CLI package: command modules share only :mod:`pipeline.cli.common` and never touch assets or
Dagster directly; ``trader setups retro-scan`` runs ``setup_retro_job`` (asset ``signals/setup_retro``)."""

import ast
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.cli.test_operator_cli import assert_run_of_the_code_location

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
    assert {p.stem for p in COMMAND_MODULES} == {
        "main",
        "research",
        "options",
        "setups",
        "alpha",
        "api",
        "notify",
        "paper",
    }
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
        "live",
        "dashboard",
        "sql",
        "options",
        "setups",
        "api",
        "notify",
        "paper",
        "alpha",
    }
    assert set(top.commands["notify"].commands) == {"test", "status"}
    assert set(top.commands["alpha"].commands) == {"train", "backtest", "targets", "status", "report"}
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
    assert_run_of_the_code_location(runs[0], "setup_retro_job")  # shown in the UI's job, timeline and asset views
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


@pytest.fixture
def options_warehouse(tmp_path, monkeypatch, onchain_inputs):
    """A warehouse holding the real on-chain features, the engine's daily signals and trades, and one evaluation
    whose benchmark returned 64.68 (+6,468 %), with the CLI pointed at it."""
    import json

    import pipeline.cli.common as cli_common
    import pipeline.cli.options as cli_options
    from pipeline.config import settings
    from pipeline.core.onchain_signals import onchain_features
    from pipeline.core.options_fusion import decide_days
    from warehouse import io, runs

    daily, fng = onchain_inputs
    f = onchain_features(daily, fng)
    f["available_at"] = f["date"] + pd.Timedelta(days=1)
    price = daily.assign(date=pd.to_datetime(daily["date"])).set_index("date")["price_usd"]
    days, trades = decide_days(f, f["date"].map(price))
    days["available_at"] = f["available_at"].to_numpy()
    path = str(tmp_path / "wh.duckdb")
    per = {"by_state": [{"state": "tactical_hedge", "trades": 49, "option_hit_rate": 0.1224, "avg_option_ret": 1.04}]}
    bench = {"buy_and_hold": {"total_return": 64.68, "annual_return": 0.5, "max_drawdown": -0.845}}
    metrics = {"n_trades": 195.0, "n_without_outcome": 3.0, "option_hit_rate": 0.41, "total_return": 0.25}
    with io.connect(path) as con:
        io.replace_table(con, "features.onchain", f, date_columns=("date",))
        io.replace_table(con, "signals.options_daily", days, date_columns=("date",))
        io.replace_table(con, "signals.options_trades", trades, date_columns=("date", "expiry"))
        row = runs.backtest_run_row(
            run_id="options_desk-fusion_options",
            desk="options_desk",
            strategy="fusion_options",
            sample="model-based",
            period_start=pd.Timestamp("2012-07-13"),
            period_end=pd.Timestamp("2025-08-21"),
            timeframe="1d",
            universe=["BTC"],
            params="{}",
            costs={},
            metrics=metrics,
            benchmark=bench,
            per_symbol=json.dumps(per),
            model_name=None,
            model_run_id=None,
            mlflow_run_id=None,
            code_version="x",
            dagster_run_id="x",
        )
        runs.write_backtest(con, row, None, pd.DataFrame({"ts": [0], "equity": [1.0]}))
    cfg = settings().model_copy(deep=True)
    cfg.warehouse.path = path
    monkeypatch.setattr(cli_common, "settings", lambda: cfg)
    monkeypatch.setattr(cli_options, "settings", lambda: cfg)
    return f, days


def _invoke(*args):
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = CliRunner().invoke(app, ["options", *args], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    return out.output


def test_score_latest_says_how_old_the_data_is_and_why_an_indicator_is_unavailable(options_warehouse):
    """Issue 12 item 6, on the real data (which ends with the whale inputs missing)."""
    f, days = options_warehouse
    last = pd.Timestamp(days["date"].max())
    behind = (pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() - last).days
    out = _invoke("score-latest")
    assert (
        f"Data: latest stored day {last.date()} (complete at {(last + pd.Timedelta(days=1)).date()} 00:00 UTC, " in out
    )
    assert f"{behind} days behind today" in out and behind > 2 and "STALE DATA" in out
    a1k = f.loc[f["whale_addr_1k"].notna(), "date"].max().date()
    assert (
        "whales unavailable" in out
        and f"whale_addr_1k has no value on the day ({last.date()}; last value {a1k})" in out
    )
    assert "INDICATOR INPUTS" not in out  # only with --verbose

    out = _invoke("score-latest", "--verbose")
    row = f[f["date"] == last].iloc[0]
    assert "INDICATOR INPUTS" in out and f"mdia_chg_30d_z = {row['mdia_chg_30d_z']:,.4f}" in out
    assert "proxy:realized_cap_age (used)" in out and "OVERLAYS: fng_value = " in out

    out = _invoke("score-latest", "--date", "2024-03-06", "--verbose")
    assert "showing 2024-03-06" in out and "(not the latest day)" in out
    day = f[f["date"] == "2024-03-06"].iloc[0]
    assert f"mvrv_ls_z_proxy = {day['mvrv_ls_z_proxy']:,.4f}" in out and "whales unavailable" not in out


def test_report_prints_percentages(options_warehouse):
    """Issue 12 item 7: a benchmark return of 64.68 is +6,468.0 %, hit rates are percentages."""
    out = _invoke("report")
    assert "+6,468.0 %" in out and "64.68" not in out and "-84.5 %" in out
    assert "41.0 %" in out and "12.2 %" in out and "+104.0 %" in out and "tactical_hedge" in out


def test_live_refuses_the_files_source_and_a_replay_outside_the_data():
    """``trader live`` without --replay needs an exchange (the test config reads files); a replay start outside the
    candle files is refused with their span. Neither starts anything."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = CliRunner().invoke(app, ["live"], env={"COLUMNS": "250"})
    assert out.exit_code == 2 and "source: exchange" in out.output and "--replay" in out.output
    out = CliRunner().invoke(app, ["live", "--replay", "2030-01-01"], env={"COLUMNS": "250"})
    assert out.exit_code == 2 and "2030-01-01" in out.output
