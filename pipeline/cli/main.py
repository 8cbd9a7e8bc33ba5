"""trader run | ingest | status | ui | live | dashboard | sql: the pipeline itself. run and ingest run main_job / ingest_job in-process
against the project's Dagster instance (DAGSTER_HOME, default <repo>/.dagster_home) as runs of the code location's
jobs, so every CLI run shows up in the Dagster UI (job page, timeline, asset views) with lineage, checks and metadata.
status and sql only read the warehouse (or its serving snapshot); dashboard serves the snapshot with Streamlit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import typer
from rich.table import Table

from pipeline.cli import common
from pipeline.cli.common import console
from pipeline.config import REPO_ROOT, write_replay_config
from pipeline.recovery import recover_dead_runs
from warehouse.io import fetch_one, table_exists

app = typer.Typer()


def print_warehouse_summary(path: str) -> None:
    """Rows, time range and gaps per table and timeframe of the warehouse at ``path`` (reads the serving snapshot if
    the writer is busy)."""
    with common.open_readonly(path) as con:
        t = Table(title=f"Warehouse {path}")
        for c in ("table", "timeframe", "partitions", "rows", "first", "last", "flagged/incomplete"):
            t.add_column(c, justify="right" if c in ("rows", "partitions") else "left")
        for table in ("raw.ohlcv", "market.ohlcv", "features.technical", "regimes.market"):
            if not table_exists(con, table):
                continue
            extra = "count(*) FILTER (WHERE bar_count < expected_bars)" if table == "market.ohlcv" else "NULL"
            for row in con.execute(f"""SELECT timeframe, count(DISTINCT symbol), count(*), min(open_time), max(open_time), {extra}
                    FROM {table} GROUP BY 1 ORDER BY CASE timeframe WHEN '1m' THEN 1 WHEN '5m' THEN 2 WHEN '15m' THEN 3
                    WHEN '1h' THEN 4 WHEN '4h' THEN 5 ELSE 6 END""").fetchall():
                t.add_row(
                    table,
                    row[0],
                    str(row[1]),
                    f"{row[2]:,}",
                    str(row[3]),
                    str(row[4]),
                    "" if row[5] is None else str(row[5]),
                )
        for table, col in (
            ("market.onchain_daily", "date"),
            ("market.sentiment_daily", "date"),
            ("raw.onchain_metrics", "date"),
        ):
            if table_exists(con, table):
                n, a, b = fetch_one(con.execute(f"SELECT count(*), min({col}), max({col}) FROM {table}"))
                t.add_row(table, "1d", "-", f"{n:,}", str(a), str(b), "")
        console.print(t)
        if table_exists(con, "market.ohlcv"):
            g = con.execute("""SELECT timeframe, count(*) AS gaps, sum(m) AS missing_bars, max(m) AS largest FROM (
                SELECT symbol, timeframe, (lead(ts) OVER w - ts) // (CASE timeframe WHEN '1m' THEN 60000 WHEN '5m' THEN 300000
                  WHEN '15m' THEN 900000 WHEN '1h' THEN 3600000 WHEN '4h' THEN 14400000 ELSE 86400000 END) - 1 AS m
                FROM market.ohlcv WINDOW w AS (PARTITION BY symbol, timeframe ORDER BY ts)) WHERE m > 0 GROUP BY 1 ORDER BY 1""").fetchall()
            gt = Table(title="Gaps in market.ohlcv (reported, never filled)")
            for c in ("timeframe", "gaps", "missing bars", "largest gap (bars)"):
                gt.add_column(c)
            for row in g:
                gt.add_row(*[str(x) for x in row])
            console.print(gt)


def report_end(job: str, results: list, ok: bool, t0: float, inst=None) -> None:
    """The end of ``trader run`` / ``ingest``: the runs' warnings, then per failed run the failing step, its error
    (file, row, rule), what to do and the log file (:func:`pipeline.cli.common.print_failures`), and a last line
    naming the failed step(s), or on success the steps, assets and checks of the run(s) and the log file(s).
    Exits 1 unless ``ok``."""
    failed_steps, logs = [], []
    for r in results:
        common.print_run_warnings(r, inst)
        if not r.success:
            logs.append(common.print_failures(r, inst))
            failed_steps += [f["step"] for f in common.failure_summary(r)]
    ids = ", ".join(r.run_id[:8] for r in results)
    if ok:
        n = [common.run_summary(r) for r in results]
        console.print(
            f"[green]{job} succeeded[/] in {time.time() - t0:.1f}s: {sum(x['steps'] for x in n)} steps, "
            f"{sum(x['assets'] for x in n)} assets ({sum(x['materializations'] for x in n)} materialisations), "
            f"{sum(x['checks'] for x in n)} checks (run ids: {ids}); log {', '.join(str(x['log']) for x in n)}",
            highlight=False,
            soft_wrap=True,
        )
        return
    if failed_steps:
        why = f": step {', '.join(dict.fromkeys(failed_steps))} failed"
    else:
        bad, log = common.print_rejected_inputs(results, inst)
        logs.append(log)
        first = bad.iloc[0] if len(bad) else None
        why = (
            f": input {first['partition_key']} rejected (rule '{first['rule']}')"
            + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
            if first is not None
            else ": an ERROR check failed"
        )
    where = f"; log {logs[0]}" if logs and logs[0] else ""
    console.print(f"[red]{job} FAILED[/]{why} ({time.time() - t0:.1f}s, run ids: {ids}){where}", soft_wrap=True)
    raise typer.Exit(1)


VERBOSE = typer.Option(
    False, "--verbose", "-v", help="Print Dagster's full event stream instead of the progress display."
)


@app.command()
def run(
    symbol: list[str] = typer.Option(None, "--symbol", "-s", help="Limit to these symbols (BASE/QUOTE)."),
    timeframe: list[str] = typer.Option(None, "--timeframe", "-t", help="Limit to these timeframes."),
    full_refresh: bool = typer.Option(False, help="Recompute the selected candle partitions from scratch."),
    retrain: bool = typer.Option(
        False,
        "--retrain",
        help="Retrain every model (by default only new code, configuration or enough new labels do).",
    ),
    verbose: bool = VERBOSE,
) -> None:
    """Run main_job: everything the project computes, for every desk.

    Ingest (candles, on-chain metrics, Fear & Greed) -> market data -> technical features -> market regimes ->
    the research baseline (model, promotion gate, backtest) -> the options desk (on-chain features, p_long/p_short
    models, daily signals and trades, evaluation) -> the setup scanner (candidates, meta-model, calibration gate,
    thresholds, gated signals, backtest) -> the serving snapshot and Parquet exports; with every asset check.
    A model retrains only when none exists, when its code or configuration changed, when enough new labelled rows
    arrived since its last training (retrain in its section of trader.yaml), or with --retrain; otherwise
    it keeps its version and the champion scores the new rows.
    Shows one line per step and a summary; the full log is written to warehouse/data/logs/RUN_ID.log.
    """
    t0 = time.time()
    inst = common.instance()
    results = common.execute("main_job", symbol, timeframe, full_refresh, inst=inst, verbose=verbose, retrain=retrain)
    ok = all(r.success for r in results)
    checks_ok = common.print_checks(results)
    if ok:
        print_warehouse_summary(common.settings().warehouse.path)
    report_end("main_job", results, ok and checks_ok, t0, inst)


@app.command()
def ingest(
    symbol: list[str] = typer.Option(None, "--symbol", "-s", help="Limit to these symbols (BASE/QUOTE)."),
    timeframe: list[str] = typer.Option(None, "--timeframe", "-t", help="Limit to these timeframes."),
    verbose: bool = VERBOSE,
) -> None:
    """Run ingest_job: the sources only (raw.ohlcv, raw.onchain_metrics, market.sentiment_daily), with their checks."""
    t0 = time.time()
    inst = common.instance()
    results = common.execute("ingest_job", symbol, timeframe, inst=inst, verbose=verbose)
    ok = all(r.success for r in results) & common.print_checks(results)
    report_end("ingest_job", results, ok, t0, inst)


def _read(sql: str):
    """``sql`` on the warehouse read-only; None when its tables do not exist yet (nothing run)."""
    try:
        return common.read(sql)
    except (duckdb.CatalogException, duckdb.IOException, FileNotFoundError):
        return None


def print_signals() -> None:
    """The latest signal of each desk (research baseline prediction, options desk day, setup scanner signal)."""
    rows = [
        (
            "research",
            "ml.predictions",
            """SELECT open_time AS latest, symbol || ' ' || timeframe || ': p_cal ' || round(p_cal, 3) AS signal,
                      count(*) OVER () AS total FROM ml.predictions ORDER BY ts DESC, symbol LIMIT 1""",
        ),
        (
            "options_desk",
            "signals.options_daily",
            """SELECT date::TIMESTAMP AS latest, state || coalesce(' ' || trade_type, '')
                      || CASE direction WHEN 1 THEN ' long' WHEN -1 THEN ' short' ELSE '' END
                      || coalesce(', confidence ' || confidence, '')
                      || CASE WHEN size > 0 THEN ', size ' || round(size, 3) ELSE '' END AS signal,
                      count(*) OVER () AS total
               FROM signals.options_daily ORDER BY date DESC LIMIT 1""",
        ),
        (
            "setup_scanner",
            "signals.setups",
            """SELECT make_timestamp(ts * 1000) AS latest, symbol || ' ' || timeframe || ' '
                      || CASE side WHEN 1 THEN 'LONG' ELSE 'SHORT' END || ' at ' || round(entry, 4) || ': ' || status
                      AS signal, count(*) OVER () AS total FROM signals.setups ORDER BY ts DESC, symbol LIMIT 1""",
        ),
    ]
    t = Table(title="Latest signal per desk")
    for c in ("desk", "table", "latest (UTC)", "signal", "rows"):
        t.add_column(c, justify="right" if c == "rows" else "left")
    for desk, tbl, sql in rows:
        df = _read(sql)
        if df is None or df.empty:
            t.add_row(desk, tbl, "-", "nothing stored yet", "0")
        else:
            r = df.iloc[0]
            t.add_row(desk, tbl, common.fmt(r["latest"]), str(r["signal"]), f"{int(r['total']):,}")
    console.print(t)


def print_models() -> None:
    """Per model of ``ml.model_runs``: the champion version and when it was trained, the last training and its gate."""
    df = _read("""SELECT model_name AS model,
                   max(model_version::INT) FILTER (WHERE promoted)::VARCHAR AS champion,
                   max(trained_at) FILTER (WHERE promoted) AS champion_trained,
                   max(trained_at) AS last_training,
                   arg_max(model_version, trained_at) AS last_version,
                   arg_max(CASE WHEN promotion_passed THEN 'passed' WHEN NOT promotion_passed THEN 'failed'
                           ELSE 'not judged' END, trained_at) AS last_gate
            FROM ml.model_runs GROUP BY 1 ORDER BY 1""")
    if df is None or df.empty:
        console.print("[yellow]No model trained yet (ml.model_runs is empty).[/]")
        return
    df["champion"] = df["champion"].fillna("none")
    common.table(df, "Models: champion per registered model, last training (ml.model_runs)")


def print_backtests() -> None:
    """The latest backtest of each desk (``backtest.runs``) with its key figures."""
    df = _read("""SELECT desk, strategy, period_start::DATE AS "from", period_end::DATE AS "to",
                   (metrics->>'$.total_return')::DOUBLE AS total_return, (metrics->>'$.annual_return')::DOUBLE AS cagr,
                   (metrics->>'$.sharpe')::DOUBLE AS sharpe, (metrics->>'$.max_drawdown')::DOUBLE AS max_dd,
                   (metrics->>'$.n_trades')::DOUBLE::BIGINT AS trades,
                   coalesce((metrics->>'$.win_rate')::DOUBLE, (metrics->>'$.option_hit_rate')::DOUBLE) AS hit_rate,
                   created_at AS run_at
            FROM backtest.runs QUALIFY row_number() OVER (PARTITION BY desk ORDER BY created_at DESC) = 1
            ORDER BY desk""")
    if df is None or df.empty:
        console.print("[yellow]No backtest yet (backtest.runs is empty).[/]")
        return
    for c in ("total_return", "cagr", "max_dd", "hit_rate"):
        df[c] = df[c].map(lambda v: common.pct(v, signed=c != "hit_rate"))
    df["sharpe"] = df["sharpe"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    common.table(df, "Latest backtest per desk (backtest.runs; out of sample, after costs)")


@app.command()
def status() -> None:
    """Read-only, runs no job: market data (rows, range, gaps, last candle per partition), the latest signal per desk,
    the champion model per registered model and its last training, the latest backtest per desk, and the asset checks
    whose latest result did not pass."""
    print_warehouse_summary(common.settings().warehouse.path)
    last = _read("""SELECT symbol, timeframe, max(open_time) AS last_candle, count(*) AS rows
                    FROM market.ohlcv GROUP BY ALL ORDER BY symbol, min(CASE timeframe WHEN '1m' THEN 1 WHEN '5m' THEN 2
                    WHEN '15m' THEN 3 WHEN '1h' THEN 4 WHEN '4h' THEN 5 ELSE 6 END)""")
    t = Table(title="Last candle per partition (market.ohlcv)")
    for c in ("symbol", "timeframe", "last candle (open, UTC)", "rows"):
        t.add_column(c)
    for r in [] if last is None else last.itertuples(index=False):
        t.add_row(r[0], r[1], str(r[2]), f"{r[3]:,}")
    console.print(t)
    print_signals()
    print_models()
    print_backtests()
    ft = Table(title="Latest asset-check results that did not pass")
    for c in ("asset", "check", "status", "run"):
        ft.add_column(c)
    failed = common.failed_checks()
    for row in failed:
        ft.add_row(*row)
    console.print(ft if failed else "[green]All latest asset checks passed.[/]")


def _stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """Stop ``proc`` and every process of its process group: SIGINT (dagster dev shuts its webserver, daemon and code
    servers down), then SIGTERM and SIGKILL to whatever of the group is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        t0 = time.time()
        while time.time() - t0 < wait and common.process_group_alive(proc.pid):
            proc.poll()
            time.sleep(0.2)
        if not common.process_group_alive(proc.pid):
            break
    proc.wait()


def _run_group(cmd: list[str], env: dict, name: str, on_start=None) -> int:
    """Run ``cmd`` in its own process group until it ends or Ctrl-C / SIGTERM, then stop it and every process it
    started (:func:`_stop_group`); the exit code (0 after Ctrl-C). ``on_start()`` runs once it is launched; ``name``
    is what the stop message calls it."""
    # Ctrl-C stops it even when this process was started with SIGINT ignored (a shell's background job, nohup): an
    # ignored disposition is inherited across exec (Python then installs no KeyboardInterrupt handler, and the child
    # would ignore the group's SIGINT too); a handler is not inherited, so the child starts with the default
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,  # its own process group, stopped as a whole below
    )
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if on_start is not None:
            on_start()
        code = proc.wait()
    except KeyboardInterrupt:
        console.print(f"[yellow]stopping {name} and its processes…[/]")
        _stop_group(proc)
        code = 0
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
        if common.process_group_alive(proc.pid):  # it ended on its own but left children
            _stop_group(proc, grace=5.0)
    return code


def _dagster_dev(port: int, workspace: str, env: dict, on_start=None) -> int:
    """Run ``dagster dev -w workspace -p port`` (:func:`_run_group`): Ctrl-C / SIGTERM stops its webserver, daemon and
    code servers."""
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", workspace, "-p", str(port)]
    return _run_group(cmd, env, "dagster dev", on_start)


DASHBOARD_APP = REPO_ROOT / "pipeline" / "apps" / "dashboard.py"


def dashboard_command(port: int, host: str) -> list[str]:
    """The ``streamlit run`` command line of the dashboard (headless: it prints its address and opens no browser;
    no usage statistics are sent; the toolbar shows only what a viewer needs, no "Deploy" button)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(DASHBOARD_APP),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


@app.command()
def ui(
    port: int = typer.Option(3000, help="Dagster webserver port."),
    workspace: str = typer.Option(
        "workspace.yaml", "--workspace", "-w", help="Workspace file (default: the project's)."
    ),
) -> None:
    """Start the Dagster UI and daemon (dagster dev -w workspace.yaml) on this project's instance; runs no job itself.

    Ctrl-C (or SIGTERM) stops dagster dev and all its processes (webserver, daemon, code servers)."""
    common.instance()
    raise typer.Exit(_dagster_dev(port, workspace, os.environ.copy()))


@app.command()
def live(
    replay: str = typer.Option(
        None,
        "--replay",
        help="Replay the candle files from this UTC date/time (YYYY-MM-DD[THH:MM]) instead of the "
        "exchange: a replay exchange on 127.0.0.1 serves them through ccxt.",
    ),
    speed: float = typer.Option(600.0, help="With --replay: simulated seconds per real second (600 = 10 min/s)."),
    port: int = typer.Option(3000, help="Dagster webserver port."),
    workspace: str = typer.Option("workspace.yaml", "--workspace", "-w", help="Workspace file."),
) -> None:
    """Run the pipeline live: the Dagster webserver and daemon with the live sensors and schedules RUNNING (each newly
    closed candle of live.timeframes launches live_candle_job); prints the UI address; Ctrl-C stops everything.

    With --replay DATE the candles come from a replay exchange (the real candle files, released as a simulated clock
    passes their close, --speed times real time), into a warehouse and Dagster instance of their own under
    warehouse/data/replay/ (the files-built warehouse is not touched). Example:
    trader live --replay 2026-04-20 --speed 600
    """
    cfg = common.settings()
    env = {**os.environ, "TRADER_LIVE": "1"}
    handle = None
    if replay is not None:
        from resources.replay_exchange import ReplayError, parse_utc, start_replay

        try:
            handle = start_replay(cfg.data_dir, replay, speed)
        except (ReplayError, ValueError) as e:
            console.print(f"[red]trader live --replay: {e}[/]")
            raise typer.Exit(2) from None
        out = Path(cfg.warehouse.path).parent / "replay"
        env["TRADER_CONFIG"] = str(write_replay_config(cfg, handle.base_url, parse_utc(replay), out))
        env.pop("TRADER_DATA_DIR", None)  # it would force the files source
        env.pop("TRADER_WAREHOUSE", None)
        home = out / ".dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")  # pools, retention
        env["DAGSTER_HOME"] = str(home)
        console.print(
            f"replay exchange {handle.base_url}: candle files from {replay} UTC at {speed:g}x; warehouse {out}"
        )
    elif cfg.source != "exchange":
        console.print(
            "[red]trader live needs candles from an exchange: set source: exchange in trader.yaml (unset "
            "TRADER_DATA_DIR, which forces the files), or replay the files: trader live --replay 2026-04-20[/]"
        )
        raise typer.Exit(2)
    else:
        env.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home"))
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    failed = recover_dead_runs(common.instance(), own_pid_is_dead=True, log=console.print)
    if failed:
        console.print(f"marked {len(failed)} run(s) of a dead process FAILURE")
    tfs = ", ".join(cfg.live.timeframes or cfg.setup_scanner.timeframes)

    def started():
        console.print(f"Dagster UI http://127.0.0.1:{port} (sensors closed_candles_[{tfs}] RUNNING); Ctrl-C stops")

    try:
        code = _dagster_dev(port, workspace, env, on_start=started)
    finally:
        if handle is not None:
            handle.stop()
    raise typer.Exit(code)


@app.command()
def dashboard(
    port: int = typer.Option(None, help="HTTP port (default dashboard.port of trader.yaml, 8501)."),
    host: str = typer.Option(None, help="Listen address (default dashboard.host, 127.0.0.1)."),
    serving: str = typer.Option(
        None, "--serving", help="Snapshot to read (a serving.duckdb or its link; default warehouse.serving_path)."
    ),
) -> None:
    """Open the desks' dashboard (Streamlit) on the read-only serving snapshot: Overview, Setup scanner, Options desk,
    Research baseline. Live panels refresh every dashboard.refresh_s seconds, so a running trader live shows up
    without a reload; Ctrl-C (or SIGTERM) stops it. Runs no job."""
    cfg = common.settings().dashboard
    port, host = port or cfg.port, host or cfg.host
    env = os.environ.copy()
    if serving:
        env["TRADER_SERVING"] = str(Path(serving).resolve())

    def started():
        console.print(f"Dashboard http://{host}:{port} (read-only snapshot); Ctrl-C stops")

    raise typer.Exit(_run_group(dashboard_command(port, host), env, "the dashboard", on_start=started))


@app.command()
def sql(
    query: str = typer.Argument(None, help="SQL to run; without it an interactive prompt opens."),
    csv: bool = typer.Option(False, "--csv", help="Print CSV instead of a table."),
    writer: bool = typer.Option(
        False, "--warehouse", help="Read the writer's warehouse.duckdb instead of the serving snapshot."
    ),
) -> None:
    """Query the serving snapshot (or with --warehouse the warehouse) read-only with DuckDB SQL; runs no job.

    With a QUERY prints the result as a table (or CSV with --csv); without one opens a prompt (a statement runs
    when a line ends with a semicolon, as in the duckdb shell; .tables lists the tables, .quit or Ctrl-D leaves).
    Example:
    trader sql "SELECT symbol, timeframe, count(*) FROM market.ohlcv GROUP BY ALL"
    """
    with common.open_sql(writer) as con:
        if query is not None:
            raise typer.Exit(common.run_sql(con, query, csv))
        common.sql_prompt(con, csv)
