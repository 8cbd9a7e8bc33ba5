"""Issue 14, items 2 and 9-13: the CLI as a newcomer meets it.

Help texts (11) and ``trader sql`` (13) run in-process with typer's CliRunner; the run display, the runs' code-location
origin, ``trader status`` without warnings (2, 9, 10) run real ``trader`` subprocesses on one small partition of the
test slice; ``trader ui`` (12) is started for real and stopped with SIGINT.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import REPO
from tests.processes import descendants, running


def assert_run_of_the_code_location(run: dg.DagsterRun, job_name: str) -> None:
    """``run`` belongs to ``job_name`` of the code location exactly as ``dagster dev -w workspace.yaml`` (``trader
    ui``, from the repository root) loads it: the same code-location origin, repository and job, hence the UI's
    ``.dagster/repository`` and ``dagster/code_location`` tags (issue 14, item 2)."""
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        (location,) = location_origins_from_yaml_paths(["workspace.yaml"])
    finally:
        os.chdir(cwd)
    origin = run.remote_job_origin
    assert origin is not None, "the run has no remote origin: invisible in the UI's job and timeline views"
    assert origin.repository_origin.code_location_origin == location and location.location_name == "crypto_pipeline"
    assert origin.repository_origin.repository_name == "__repository__" and origin.job_name == job_name
    assert run.tags_for_storage()[".dagster/repository"] == "__repository__@crypto_pipeline"  # the UI's run filter
    assert run.tags["dagster/code_location"] == "crypto_pipeline"
    assert run.job_code_origin.job_name == job_name
    assert run.job_code_origin.repository_origin.code_pointer.module == "pipeline.definitions"


def _leaf_commands(cmd, path=()):
    """``(path, click command)`` of every command of the ``trader`` app (groups descended)."""
    subs = getattr(cmd, "commands", None)
    if subs is None:
        yield path, cmd
        return
    for name, sub in subs.items():
        yield from _leaf_commands(sub, (*path, name))


# --------------------------------------------------------------------------- trader status (items 9, 10)


@pytest.fixture
def status_warehouse(tmp_path):
    """A warehouse with hand-written rows for every section of ``trader status`` (two models, one champion; one
    backtest per desk, the latest of two for research; one signal per desk) and the env of a trader subprocess."""
    import json

    from warehouse import io, runs

    wh = tmp_path / "wh" / "warehouse.duckdb"
    t = pd.Timestamp
    with io.connect(str(wh)) as con:
        for name, version, trained, passed, promoted in (
            ("setup_meta", "1", t("2026-11-01 10:00"), True, True),
            ("setup_meta", "2", t("2026-11-20 10:00"), False, False),
            ("options_p_long", "1", t("2026-11-02 09:30"), False, False),
        ):
            con.execute(
                "INSERT INTO ml.model_runs (mlflow_run_id, model_name, model_version, trained_at, promotion_passed, "
                "promoted) VALUES (?, ?, ?, ?, ?, ?)",
                [f"{name}-{version}", name, version, trained, passed, promoted],
            )
        for desk, strategy, created, metrics in (
            ("research", "old", "2026-11-01", {"total_return": 9.0, "n_trades": 1.0}),
            (
                "research",
                "baseline_long_flat",
                "2026-11-02",
                {
                    "total_return": -0.2215,
                    "sharpe": -0.27,
                    "max_drawdown": -0.3186,
                    "annual_return": -0.0351,
                    "n_trades": 3956.0,
                    "win_rate": 0.4601,
                },
            ),
            (
                "options_desk",
                "fusion_options",
                "2026-11-03",
                {"total_return": 64.68, "n_trades": 307.0, "option_hit_rate": 0.3941},
            ),
        ):
            row = runs.backtest_run_row(
                run_id=f"{desk}-{strategy}",
                desk=desk,
                strategy=strategy,
                sample="out_of_sample",
                period_start=t("2019-05-01"),
                period_end=t("2026-04-30"),
                timeframe="1h",
                universe=["BTC/USDT"],
                params="{}",
                costs={},
                metrics=metrics,
                benchmark={},
                per_symbol=json.dumps({}),
                model_name=None,
                model_run_id=None,
                mlflow_run_id=None,
                code_version="x",
                dagster_run_id="x",
            )
            row["created_at"] = t(created)
            runs.write_backtest(con, row, None, pd.DataFrame({"ts": [0], "equity": [1.0]}))
        io.replace_table(
            con,
            "signals.options_daily",
            pd.DataFrame(
                {
                    "date": [t("2025-10-06"), t("2025-10-07")],
                    "state": ["no_trade", "long_call"],  # as the options desk stores them
                    "trade_type": [None, "call"],
                    "direction": [0, 1],
                    "confidence": [None, "high"],
                    "size": [0.0, 0.5],
                }
            ),
            date_columns=("date",),
        )
        io.replace_table(
            con,
            "signals.setups",
            pd.DataFrame(
                {
                    "ts": [1745000000000, 1745003600000],
                    "symbol": ["BTC/USDT", "ETH/USDT"],
                    "timeframe": ["1h", "1h"],
                    "side": [1, -1],
                    "entry": [84000.5, 1600.25],
                    "status": ["TP", "OPEN"],
                }
            ),
        )
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # a pipe without COLUMNS: as in CI or `| less`
    return {**env, "TRADER_WAREHOUSE": str(wh), "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}


def test_status_covers_every_desk_without_warnings_and_is_not_cut_at_80_columns(status_warehouse):
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "status"],
        cwd=REPO,
        env=status_warehouse,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stderr == "" and "warning" not in out.stdout.lower(), out.stderr[-3000:]
    text = out.stdout
    # signals: the latest per desk
    assert "Latest signal per desk" in text
    assert re.search(
        r"options_desk\s+│ signals\.options_daily\s+│ 2025-10-07\s+│ long_call call long, confidence high, size 0\.5",
        text,
    )
    assert re.search(
        r"setup_scanner\s+│ signals\.setups\s+│ 2025-04-18 19:13:20\s+│ ETH/USDT 1h SHORT at 1600\.25: OPEN", text
    )
    assert re.search(r"research\s+│ ml\.predictions\s+│ -\s+│ nothing stored yet", text)
    # models: champion version and when it was trained, last training and its gate verdict
    assert re.search(r"setup_meta\s+│ 1\s+│ 2026-11-01 10:00:00\s+│ 2026-11-20 10:00:00\s+│ 2\s+│ failed", text), text
    assert re.search(r"options_p_long\s+│ none\s+│\s+│ 2026-11-02 09:30:00\s+│ 1\s+│ failed", text)
    # backtests: the latest per desk with its key figures (research's older run is not shown)
    assert re.search(r"research\s+│ baseline_long_flat .*-22\.1 %.*-3\.5 %.*-0\.27 .*-31\.9 %.*3956.*46\.0 %", text)
    assert re.search(r"options_desk\s+│ fusion_options .*\+6,468\.0 %.*307.*39\.4 %", text) and "│ old " not in text
    assert "All latest asset checks passed." in text
    # a pipe is not a terminal: the tables are not cut at 80 columns
    assert "flagged/incomplete" in text and "…" not in text and max(map(len, text.splitlines())) > 80


def test_help_has_no_rst_backticks_and_says_what_each_command_runs():
    from assets.keys import GROUP_OPTIONS, GROUP_RESEARCH, GROUP_SETUPS
    from pipeline.cli import app

    top = typer.main.get_command(app)
    runner = CliRunner()
    leaves = list(_leaf_commands(top))
    assert len(leaves) > 20
    bad, empty, unnamed = [], [], []
    for path, cmd in [((), top), *[(p, top) for p in {p[:1] for p, _ in leaves if len(p) > 1}], *leaves]:
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert out.exit_code == 0, (path, out.output)
        if "`" in out.output:
            bad.append(" ".join(path) or "trader")
    for path, cmd in leaves:
        if not (cmd.help or "").strip() or "\n" in (cmd.help or "").split("\n\n")[0]:
            empty.append(" ".join(path))  # or a first paragraph cut by line breaks in the command list
        # a command names the job it runs (every job it names literally), or says it runs none
        jobs = set(re.findall(r'"(\w+_job)"', inspect.getsource(cmd.callback)))
        named = set(re.findall(r"\w+_job", cmd.help or ""))
        if jobs - named or not (named or "runs no job" in (cmd.help or "").lower()):
            unnamed.append((" ".join(path), sorted(jobs)))
    assert not bad, f"help with RST backticks: {bad}"
    assert not empty, f"commands without help: {empty}"
    assert not unnamed, f"commands whose help does not name the job they run: {unnamed}"
    run_help = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output.lower()
    for desk in (GROUP_RESEARCH, GROUP_OPTIONS, GROUP_SETUPS):
        assert desk.replace("_", " ") in run_help, desk
    assert "main_job" in run_help and "serving snapshot" in run_help


# --------------------------------------------------------------------------- trader sql (item 13)


@pytest.fixture
def snapshot(tmp_path, monkeypatch):
    """A serving snapshot and a writer warehouse with one small table each, the CLI pointed at them."""
    import pipeline.cli.common as common
    from pipeline.config import settings
    from warehouse import io

    cfg = settings().model_copy(deep=True)
    cfg.warehouse.path, cfg.warehouse.serving_path = str(tmp_path / "wh.duckdb"), str(tmp_path / "serving.duckdb")
    df = pd.DataFrame({"symbol": ["BTC/USDT", "ETH/USDT", "[a, b]"], "close": [42000.5, 2500.25, 1.0]})
    for path, frame in ((cfg.warehouse.serving_path, df), (cfg.warehouse.path, df.head(1))):
        with io.connect(path) as con:
            io.replace_table(con, "market.prices", frame)
    monkeypatch.setattr(common, "settings", lambda: cfg)
    return cfg


def _sql(*args, input=None):
    from pipeline.cli import app

    return CliRunner().invoke(app, ["sql", *args], input=input, env={"COLUMNS": "200"})


def test_sql_queries_the_snapshot_read_only(snapshot):
    out = _sql("SELECT symbol, close FROM market.prices ORDER BY close DESC")
    assert out.exit_code == 0, out.output
    assert "42,000.50" in out.output and "ETH/USDT" in out.output and "[a, b]" in out.output and "3 rows" in out.output
    out = _sql("SELECT symbol, close FROM market.prices ORDER BY close DESC", "--csv")
    assert out.exit_code == 0 and out.output == 'symbol,close\nBTC/USDT,42000.5\nETH/USDT,2500.25\n"[a, b]",1.0\n'
    out = _sql("SELECT count(*) AS n FROM market.prices", "--warehouse", "--csv")
    assert out.output == "n\n1\n", out.output
    out = _sql("DELETE FROM market.prices")  # read-only: refused, one line, exit 1
    assert out.exit_code == 1 and "read-only" in out.output.lower() and "Traceback" not in out.output
    out = _sql("SELEC 1")
    assert out.exit_code == 1 and "ParserException" in out.output


def test_sql_prompt(snapshot):
    out = _sql(input=".tables\nSELECT max(close)\n  AS top FROM market.prices;\n.quit\n")
    assert out.exit_code == 0, out.output
    assert "market.prices" in out.output and "42,000.50" in out.output and "1 row" in out.output
    out = _sql(input="SELECT 1 AS x;\n")  # Ctrl-D (end of input) leaves
    assert out.exit_code == 0 and "1 row" in out.output


def test_sql_without_a_snapshot_says_what_to_do(snapshot):
    Path(snapshot.warehouse.serving_path).unlink()
    out = _sql("SELECT 1")
    assert out.exit_code == 1 and "run trader run first" in out.output


# --------------------------------------------------------------------------- trader ui (item 12)


def test_ui_ctrl_c_stops_dagster_dev_and_all_its_processes(tmp_path):
    """A real ``trader ui`` (on a one-asset workspace, so it starts fast), SIGINT once it answers HTTP: no process
    it started survives, and they ran in their own process group."""
    (tmp_path / "tiny_defs.py").write_text(
        "import dagster as dg\n\n\n@dg.asset\ndef a():\n    return 1\n\n\ndefs = dg.Definitions(assets=[a])\n"
    )
    ws = tmp_path / "workspace.yaml"
    ws.write_text(
        f"load_from:\n  - python_file:\n      relative_path: {tmp_path / 'tiny_defs.py'}\n      location_name: tiny\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    log = (tmp_path / "ui.log").open("w")
    p = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "ui", "--port", str(port), "--workspace", str(ws)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # started with SIGINT ignored, as a shell's background job or nohup starts it (inherited across exec): Ctrl-C
        # must still stop it (it used to wait forever when the test suite itself ran in the background)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    started: set[int] = set()
    try:
        t0 = time.time()
        while True:
            assert p.poll() is None and time.time() - t0 < 120, (tmp_path / "ui.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        started = descendants(p.pid)
        assert len(started) >= 3  # dagster dev, its webserver, daemon and code server
        groups = {os.getpgid(pid) for pid in started if running(pid)}
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=120)  # its own stop escalates within 45 s; a loaded machine adds to that
        left = [pid for pid in started if running(pid)]
        assert not left, f"still running after Ctrl-C: {left}"
        assert rc == 0 and len(groups) == 1 and os.getpgid(0) not in groups  # they ran in their own process group
    finally:
        for pid in [q for q in started | descendants(p.pid) | {p.pid} if running(q)]:
            os.kill(pid, signal.SIGKILL)
        p.wait()
        log.close()
