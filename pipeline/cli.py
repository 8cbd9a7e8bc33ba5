"""``trader`` — the command line. Subcommands run the same Dagster assets in-process against the
project's Dagster instance (``DAGSTER_HOME``, default ``<repo>/.dagster_home``), so every CLI run shows
up in the Dagster UI with lineage, checks and metadata.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import REPO_ROOT, settings

app = typer.Typer(help="Crypto trading-signal pipeline (Dagster + DuckDB).", no_args_is_help=True, add_completion=False)
console = Console()


def _register_subcommands() -> None:
    from pipeline.cli_options import api_app
    from pipeline.cli_options import app as options_app
    from pipeline.cli_setups import app as setups_app
    app.add_typer(options_app, name="options")
    app.add_typer(setups_app, name="setups")
    app.add_typer(api_app, name="api")


def _instance():
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    import dagster as dg
    return dg.DagsterInstance.get()


def execute(job_name: str, symbols: list[str] | None = None, timeframes: list[str] | None = None,
            full_refresh: bool = False, instance=None) -> list:
    """Run ``job_name`` over ``symbols × timeframes`` (default: the configured universe) in-process.

    One run per requested symbol when a subset is given (a multi-partition range is a rectangle in
    definition order); otherwise one run for the whole universe. Returns the ``ExecuteInProcessResult`` s.
    """
    from pipeline.definitions import defs
    from pipeline.partitions import full_range_tags
    job = defs.resolve_job_def(job_name)
    inst = instance or _instance()
    run_config = {}
    if full_refresh:
        ops = {"raw__ohlcv", "market__ohlcv", "features__technical", "regimes__market"}
        run_config = {"ops": {k: {"config": {"full_refresh": True}} for k in ops if k in {n.name for n in job.graph.node_defs}}}
    groups = [[s] for s in symbols] if symbols else [None]
    results = []
    for syms in groups:
        tags = full_range_tags(syms, timeframes)
        results.append(job.execute_in_process(instance=inst, tags=tags, run_config=run_config, raise_on_error=False))
    return results


def _print_checks(results) -> bool:
    t = Table(title="Asset checks", show_lines=False)
    for c in ("asset", "check", "severity", "result"):
        t.add_column(c)
    ok = True
    for r in results:
        for ev in r.get_asset_check_evaluations():
            sev = ev.severity.value if hasattr(ev.severity, "value") else str(ev.severity)
            passed = ev.passed
            ok &= passed or sev != "ERROR"
            t.add_row("/".join(ev.asset_key.path), ev.check_name, sev,
                      "[green]passed[/]" if passed else ("[red]FAILED[/]" if sev == "ERROR" else "[yellow]warn[/]"))
    console.print(t)
    return ok


def print_warehouse_summary(path: str | None = None) -> None:
    """Rows, time range and gaps per table and timeframe (reads the serving snapshot if the writer is busy)."""
    import duckdb
    from warehouse.io import fetch_one, connect, table_exists
    cfg = settings()
    target = path or cfg.warehouse.path
    try:
        ctx = connect(target, read_only=True)
        con = ctx.__enter__()
    except duckdb.IOException:
        console.print(f"[yellow]{target} is locked by a running pipeline; reading the serving snapshot[/]")
        ctx = connect(cfg.warehouse.serving_path, read_only=True)
        con = ctx.__enter__()
    try:
        t = Table(title=f"Warehouse {target}")
        for c in ("table", "timeframe", "partitions", "rows", "first", "last", "flagged/incomplete"):
            t.add_column(c, justify="right" if c in ("rows", "partitions") else "left")
        for table in ("raw.ohlcv", "market.ohlcv", "features.technical", "regimes.market"):
            if not table_exists(con, table):
                continue
            extra = "count(*) FILTER (WHERE bar_count < expected_bars)" if table == "market.ohlcv" else "NULL"
            for row in con.execute(f"""SELECT timeframe, count(DISTINCT symbol), count(*), min(open_time), max(open_time), {extra}
                    FROM {table} GROUP BY 1 ORDER BY CASE timeframe WHEN '1m' THEN 1 WHEN '5m' THEN 2 WHEN '15m' THEN 3
                    WHEN '1h' THEN 4 WHEN '4h' THEN 5 ELSE 6 END""").fetchall():
                t.add_row(table, row[0], str(row[1]), f"{row[2]:,}", str(row[3]), str(row[4]), "" if row[5] is None else str(row[5]))
        for table, col in (("market.onchain_daily", "date"), ("market.sentiment_daily", "date"), ("raw.onchain_metrics", "date")):
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
    finally:
        ctx.__exit__(None, None, None)


@app.command()
def run(symbol: list[str] = typer.Option(None, "--symbol", "-s", help="Limit to these symbols (BASE/QUOTE)."),
        timeframe: list[str] = typer.Option(None, "--timeframe", "-t", help="Limit to these timeframes."),
        full_refresh: bool = typer.Option(False, help="Recompute the selected candle partitions from scratch.")) -> None:
    """Materialise everything (ingest, market, features, regimes, serving snapshot) and print a summary."""
    t0 = time.time()
    results = execute("main_job", symbol, timeframe, full_refresh)
    ok = all(r.success for r in results)
    checks_ok = _print_checks(results)
    print_warehouse_summary()
    console.print(f"[{'green' if ok else 'red'}]main_job {'succeeded' if ok else 'FAILED'}[/] in {time.time() - t0:.1f}s "
                  f"(run ids: {', '.join(r.run_id[:8] for r in results)})")
    if not (ok and checks_ok):
        raise typer.Exit(1)


@app.command()
def ingest(symbol: list[str] = typer.Option(None, "--symbol", "-s"),
           timeframe: list[str] = typer.Option(None, "--timeframe", "-t")) -> None:
    """Sources only: raw.ohlcv, raw.onchain_metrics, market.sentiment_daily."""
    t0 = time.time()
    results = execute("ingest_job", symbol, timeframe)
    ok = all(r.success for r in results) & _print_checks(results)
    console.print(f"ingest {'succeeded' if ok else 'FAILED'} in {time.time() - t0:.1f}s")
    if not ok:
        raise typer.Exit(1)


@app.command()
def status() -> None:
    """What is in the warehouse, last candle per partition, and the latest failed checks."""
    print_warehouse_summary()
    import duckdb
    from warehouse.io import connect
    cfg = settings()
    try:
        with connect(cfg.warehouse.path, read_only=True) as con:
            last = con.execute("""SELECT symbol, timeframe, max(open_time) AS last_candle, count(*) AS rows
                                  FROM market.ohlcv GROUP BY ALL ORDER BY symbol, min(CASE timeframe WHEN '1m' THEN 1 WHEN '5m' THEN 2 WHEN '15m' THEN 3 WHEN '1h' THEN 4 WHEN '4h' THEN 5 ELSE 6 END)""").fetchall()
    except (duckdb.IOException, duckdb.CatalogException):
        last = []
    t = Table(title="Last candle per partition (market.ohlcv)")
    for c in ("symbol", "timeframe", "last candle (open, UTC)", "rows"):
        t.add_column(c)
    for r in last:
        t.add_row(r[0], r[1], str(r[2]), f"{r[3]:,}")
    console.print(t)
    from pipeline.definitions import defs
    inst = _instance()
    ft = Table(title="Latest asset-check results that did not pass")
    for c in ("asset", "check", "status", "run"):
        ft.add_column(c)
    n = 0
    for key in defs.resolve_asset_graph().asset_check_keys:
        rec = inst.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
        if rec is None:
            continue
        ev = rec.event.asset_check_evaluation if rec.event and rec.event.dagster_event else None
        if ev is not None and not ev.passed:
            n += 1
            ft.add_row("/".join(key.asset_key.path), key.name, f"{ev.severity.value}", rec.run_id[:8])
    console.print(ft if n else "[green]All latest asset checks passed.[/]")


def _run_unpartitioned(job_name: str, run_config: dict | None = None):
    from pipeline.definitions import defs
    return defs.resolve_job_def(job_name).execute_in_process(instance=_instance(), run_config=run_config or {},
                                                              raise_on_error=False)


def _metadata(result, key: list[str]) -> dict:
    import dagster as dg
    for ev in result.get_asset_materialization_events():
        mat = ev.step_materialization_data.materialization
        if mat.asset_key == dg.AssetKey(key):
            return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return {}


def _print_md(title: str, text: str | None) -> None:
    if text:
        from rich.markdown import Markdown
        console.rule(title)
        console.print(Markdown(text))


def _print_folds(folds, title: str) -> None:
    """Per-fold table: spans (UTC dates), sizes, purged rows, OOS AUC/Brier/ECE."""
    t = Table(title=title)
    cols = ["fold", "train_start", "train_end", "test_start", "test_end", "n_train", "n_test", "n_purged", "auc_raw", "auc_cal",
            "brier_cal", "base_rate_cal", "ece_cal"]
    for c in cols:
        t.add_column(c.replace("_", " "), justify="right")
    for r in folds.itertuples():
        t.add_row(*[(f"{v:.4f}" if isinstance(v, float) else str(v)[:10]) for v in (getattr(r, c) for c in cols)])
    console.print(t)


@app.command()
def train(force: bool = typer.Option(False, help="Retrain even if features and configuration are unchanged.")) -> None:
    """Train the baseline model (walk-forward, calibration, MLflow), run the promotion gate, promote if it passes."""
    t0 = time.time()
    r = _run_unpartitioned("train_job", {"ops": {"ml__baseline_direction": {"config": {"force": force}}}} if force else None)
    checks_ok = _print_checks([r])
    md = _metadata(r, ["ml", "baseline_direction"])
    _print_md("Out-of-sample scores", md.get("oos_scores"))
    if md.get("mlflow_run_id"):
        from warehouse.io import connect, read_df
        with connect(settings().warehouse.path, read_only=True) as con:
            _print_folds(read_df(con, "SELECT * FROM ml.folds WHERE mlflow_run_id = ? ORDER BY fold", [md["mlflow_run_id"]]),
                         f"Folds of MLflow run {md['mlflow_run_id']}")
    ev = _metadata(r, ["ml", "baseline_direction_evaluation"])
    _print_md(f"Promotion gate: {ev.get('verdict', '?')}", ev.get("rules"))
    ch = _metadata(r, ["ml", "baseline_direction_champion"])
    if ch:
        console.print(f"champion: {ch.get('champion')} -> version {ch.get('version')}")
    console.print(f"[{'green' if r.success else 'red'}]train {'succeeded' if r.success else 'FAILED'}[/] in {time.time() - t0:.1f}s"
                  + (f" — {md['status']}" if "status" in md else ""))
    if not (r.success and checks_ok):
        raise typer.Exit(1)


@app.command()
def backtest(strategy: str = typer.Option("baseline", help="Strategy to backtest (this issue ships 'baseline')."),
             fee_bps: float = typer.Option(None, "--fee-bps", help="Taker and maker fee in bps (default: trader.yaml)."),
             slippage_bps: float = typer.Option(None, "--slippage-bps", help="Slippage in bps (default: trader.yaml)."),
             latency: int = typer.Option(None, "--latency", help="Extra bars between decision and fill."),
             threshold: float = typer.Option(None, "--threshold", help="Entry threshold on calibrated p."),
             force: bool = typer.Option(False, help="Re-run even if unchanged.")) -> None:
    """Backtest a strategy on the stored out-of-sample predictions and print metrics next to buy-and-hold."""
    if strategy != "baseline":
        console.print(f"[red]unknown strategy {strategy!r}; available: baseline[/]")
        raise typer.Exit(2)
    cfg = {k: v for k, v in {"fee_bps": fee_bps, "slippage_bps": slippage_bps, "latency_bars": latency,
                             "enter_threshold": threshold, "force": force or None}.items() if v is not None}
    t0 = time.time()
    r = _run_unpartitioned("backtest_job", {"ops": {"backtest__baseline": {"config": cfg}}})
    checks_ok = _print_checks([r])
    md = _metadata(r, ["backtest", "baseline"])
    if "status" in md:
        console.print(md["status"])
    for k in ("run_id", "sample", "period", "universe", "costs"):
        if k in md:
            console.print(f"[bold]{k}[/]: {md[k]}")
    _print_md("Metrics vs buy-and-hold (same period, same universe)", md.get("metrics_vs_buy_and_hold"))
    _print_md("Per symbol", md.get("per_symbol"))
    console.print(f"[{'green' if r.success else 'red'}]backtest {'succeeded' if r.success else 'FAILED'}[/] in {time.time() - t0:.1f}s")
    if not (r.success and checks_ok):
        raise typer.Exit(1)


@app.command("walk-forward")
def walk_forward_cmd(train_window: str = typer.Option(None, "--train-window", help="Bars (8760) or duration (365d)."),
                     test_window: str = typer.Option(None, "--test-window", help="Bars or duration per test fold."),
                     purge: str = typer.Option(None, "--purge", help="Extra purge beyond label overlap (bars or duration)."),
                     embargo: str = typer.Option(None, "--embargo", help="Gap before each test fold (bars or duration)."),
                     rolling: bool = typer.Option(False, "--rolling", help="Rolling instead of expanding training window.")) -> None:
    """Run the baseline's purged walk-forward (read-only, nothing logged) and print the per-fold table."""
    import duckdb
    from pipeline import research
    from warehouse.io import connect
    cfg = settings()
    b = cfg.research.baseline
    w = research.window_spec(b, train_window, test_window, purge, embargo, False if rolling else None)
    t0 = time.time()
    try:
        ctx = connect(cfg.warehouse.path, read_only=True)
        con = ctx.__enter__()
    except duckdb.IOException:
        ctx = connect(cfg.warehouse.serving_path, read_only=True)
        con = ctx.__enter__()
    try:
        run = research.train_baseline(con, cfg.exchange.id, b, w, fit_final=False)
    except ValueError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1)
    finally:
        ctx.__exit__(None, None, None)
    _print_folds(run.result.folds, f"{b.name}: purged walk-forward ({'rolling' if rolling else 'expanding'}), "
                 f"train {w.train_ms / 86_400_000:g}d, test {w.test_ms / 86_400_000:g}d, purge {w.purge_ms / 3_600_000:g}h, "
                 f"embargo {w.embargo_ms / 3_600_000:g}h")
    s = run.result.scores_cal
    console.print(f"OOS calibrated: AUC {s['auc']:.4f}, Brier {s['brier']:.5f} (base rate {s['brier_base']:.5f}), "
                  f"ECE {s['ece']:.4f}, rows {int(s['n']):,}; {time.time() - t0:.1f}s")


@app.command()
def ui(port: int = typer.Option(3000, help="Dagster webserver port.")) -> None:
    """Start the Dagster UI (``dagster dev -w workspace.yaml``) on this project's instance."""
    _instance()
    raise typer.Exit(subprocess.call([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)],
                                     cwd=REPO_ROOT, env=os.environ.copy()))


_register_subcommands()

if __name__ == "__main__":
    app()
