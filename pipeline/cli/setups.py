"""``trader setups …`` — the setup scanner's commands (seed 002: retro_scan, scan_signals, train_meta, calibrate_meta,
tune_thresholds, analyze_results, db_inspect). Commands that change state run the group's Dagster jobs in-process
(visible in the Dagster UI): ``retro-scan`` runs ``setup_retro_job`` (asset ``signals/setup_retro``); read-only
commands query the warehouse (or the serving snapshot while a run writes)."""

from __future__ import annotations

import json
import time

import pandas as pd
import typer

from pipeline.cli.common import asset_metadata, console, print_checks, print_failures, print_md, read, run_job, table
from pipeline.config import settings
from pipeline.core.backtest import SUMMARY_METRICS
from pipeline.core.setup_gating import target_reach
from pipeline.core.setup_signals import CLOSED_STATUSES, executed_by_series
from pipeline.core.setups import nominal_pnl_by

app = typer.Typer(help="Setup scanner: Fibonacci/AVWAP/ATR setups, p(win) meta-model, EV gating.", no_args_is_help=True)

SETUP_TABLES = ["signals.setup_candidates", "ml.setup_meta_scores", "signals.setup_thresholds", "signals.setups"]


def _job(name: str, run_config: dict | None = None):
    r = run_job(name, run_config)
    print_checks([r])
    return r


def _done(r, what: str, t0: float) -> None:
    console.print(
        f"[{'green' if r.success else 'red'}]{what} {'succeeded' if r.success else 'FAILED'}[/] in {time.time() - t0:.1f}s"
    )
    if not r.success:
        raise typer.Exit(1)


@app.command("retro-scan")
def retro_scan(
    start: str = typer.Option(None, "--start", help="First signal day (YYYY-MM-DD, UTC)."),
    end: str = typer.Option(None, "--end", help="Last signal day (inclusive)."),
    stride: int = typer.Option(1, "--stride", min=1, help="Test every N-th bar only (speed)."),
    limit_per_pair: int = typer.Option(
        0, "--limit-per-pair", min=0, help="At most N gated signals per symbol x timeframe (0 = all)."
    ),
    out: str = typer.Option(None, "--csv", help="Also write the signals and outcomes to this CSV."),
) -> None:
    """Run setup_retro_job: backfill a window's signals with the same gating as live and simulate them at once (table
    signals.setup_retro)."""
    t0 = time.time()
    r = run_job(
        "setup_retro_job",
        {
            "ops": {
                "signals__setup_retro": {
                    "config": {"start": start, "end": end, "stride": stride, "limit_per_pair": limit_per_pair}
                }
            }
        },
    )
    md = asset_metadata(r, ["signals", "setup_retro"])
    if not r.success or not md:
        print_failures(r)
        console.print(f"[red]retro-scan FAILED[/] in {time.time() - t0:.1f}s (setup_retro_job run {r.run_id[:8]})")
        raise typer.Exit(1)
    mode = md["gate_mode"]
    if not md["signals"]:
        console.print(f"[yellow]no gated signals in that window ({md['candidates']} candidates, gate {mode})[/]")
        raise typer.Exit(0)
    res = read("SELECT * FROM signals.setup_retro")
    closed, by = res[res["status"].isin(CLOSED_STATUSES)], executed_by_series(res)
    table(by, f"Retro-scan {start or 'start'} .. {end or 'end'} (stride {stride}, gate {mode}): executed trades")
    usd = settings().setup_scanner.evaluation.usd_per_trade
    table(nominal_pnl_by(res, ["status"], usd), f"Signal statuses (pnl_usd at {usd:,.0f} USD per trade)")
    if out:
        res.to_csv(out, index=False)
        console.print(f"wrote {len(res)} rows to {out}")
    console.print(
        f"[green]retro-scan[/] {md['candidates']} candidates -> {len(res)} signals -> {len(closed)} closed trades "
        f"in {time.time() - t0:.1f}s (table signals.setup_retro)"
    )


@app.command("scan")
def scan() -> None:
    """Run setup_scan_job: scan the latest closed candles, gate with the champion and the tuned thresholds, execute;
    print the fresh signals."""
    t0 = time.time()
    r = _job("setup_scan_job")
    live = read("""SELECT symbol, timeframe, make_timestamp(ts * 1000) AS signal_time, CASE side WHEN 1 THEN 'LONG' ELSE 'SHORT' END AS side,
                   entry, sl, tp1, tp2, leverage, qty, p_win, ev_pct, threshold_source, status FROM signals.setups
                   WHERE status IN ('NEW', 'OPEN') ORDER BY ts DESC LIMIT 30""")
    table(live, "Live setups (NEW / OPEN)")
    _done(r, "scan", t0)


@app.command("train-meta")
def train_meta(
    force: bool = typer.Option(False, "--force", help="Retrain even if candidates and configuration are unchanged."),
) -> None:
    """Run setup_train_job: retrain the p(win) meta-model (walk-forward, isotonic on out-of-fold scores, MLflow
    version)."""
    t0 = time.time()
    r = _job("setup_train_job", {"ops": {"ml__setup_meta": {"config": {"force": force}}}})
    name = settings().setup_scanner.meta.name
    runs = read(
        """SELECT model_version, trained_at, n_rows, n_folds, round((metrics->>'$.cal.auc')::DOUBLE, 4) AS auc,
                   round((metrics->>'$.cal.brier')::DOUBLE, 5) AS brier, round((metrics->>'$.cal.brier_base')::DOUBLE, 5) AS brier_base,
                   round((metrics->>'$.cal.ece')::DOUBLE, 4) AS ece, promotion_passed, promoted FROM ml.model_runs
                   WHERE model_name = ? ORDER BY trained_at DESC LIMIT 5""",
        [name],
    )
    table(runs, f"{name}: latest versions (out-of-sample, calibrated)")
    _done(r, "train-meta", t0)


@app.command("calibrate-meta")
def calibrate_meta() -> None:
    """Run setup_calibrate_job: judge the latest version's calibrated out-of-sample scores (blocking promotion gate) and promote it if it passes;
    prints the reliability table. Calibration itself (isotonic) is fit inside training on out-of-fold scores only."""
    from models.calibration import reliability_table

    t0 = time.time()
    r = _job("setup_calibrate_job")
    ev = asset_metadata(r, ["ml", "setup_meta_gate"])
    print_md(f"Promotion gate: {ev.get('verdict', '?')}", ev.get("rules"))
    s = read(
        """SELECT p_cal, win FROM ml.setup_meta_scores WHERE mlflow_run_id = ? AND p_cal IS NOT NULL AND win IS NOT NULL""",
        [ev.get("mlflow_run_id", "")],
    )
    if len(s):
        table(reliability_table(s["p_cal"], s["win"]).dropna(), "Reliability (calibrated, out of sample)")
    _done(r, "calibrate-meta", t0)


@app.command("tune-thresholds")
def tune_thresholds() -> None:
    """Run setup_tune_job: re-tune the per pair/timeframe thresholds (point-in-time versions), re-gate, re-simulate and
    refresh the report."""
    t0 = time.time()
    r = _job("setup_tune_job")
    md = asset_metadata(r, ["signals", "setup_thresholds"])
    print_md("Thresholds in force (latest version)", md.get("latest_thresholds"))
    print_md("Coverage versus win rate (all pairs, last window)", md.get("coverage_vs_winrate"))
    print_md(
        f"How far the {md.get('target_winrate', 0):.0%} target is, per pair/timeframe: the best win rate reachable with "
        "at least min_closed_samples closed signals and the coverage it keeps (gap_pp = target - best, points)",
        md.get("target_reach"),
    )
    _done(r, "tune-thresholds", t0)


@app.command("analyze-results")
def analyze_results(
    equity_csv: str = typer.Option(None, "--equity-csv", help="Write the gated run's equity curve here."),
) -> None:
    """Read-only, runs no job: metrics of gated vs ungated vs buy-and-hold (out of sample, with costs), statuses, and
    the equity CSV."""
    runs = read(
        "SELECT run_id, strategy, period_start, period_end, metrics, benchmark FROM backtest.runs "
        "WHERE desk = 'setup_scanner' ORDER BY strategy"
    )
    if runs.empty:
        console.print("[red]no setup scanner backtest yet; run `trader run` or `trader setups tune-thresholds`[/]")
        raise typer.Exit(1)
    keys = SUMMARY_METRICS
    m = {r.strategy: json.loads(r.metrics) for r in runs.itertuples()}
    m["buy_and_hold"] = json.loads(runs["benchmark"].iloc[0])
    table(
        pd.DataFrame([{"metric": k, **{s: v.get(k) for s, v in m.items()}} for k in keys]),
        f"Setup scanner, out of sample {runs['period_start'].iloc[0]} .. {runs['period_end'].iloc[0]} (costs included)",
    )
    usd = settings().setup_scanner.evaluation.usd_per_trade
    st = nominal_pnl_by(read("SELECT timeframe, status, net_pct FROM signals.setups"), ["timeframe", "status"], usd)
    table(
        st.sort_values(["timeframe", "n"], ascending=[True, False]),
        f"Gated signals by status (executed, one position per symbol x timeframe; pnl_usd at {usd:,.0f} USD per trade)",
    )
    _print_target_reach()
    if equity_csv:
        gated = runs[runs["strategy"] == "setup_gated"]["run_id"].iloc[0]
        eq = read(
            "SELECT make_timestamp(ts * 1000) AS time, equity, drawdown, benchmark_equity FROM backtest.equity "
            "WHERE run_id = ? ORDER BY ts",
            [gated],
        )
        eq.to_csv(equity_csv, index=False)
        console.print(f"wrote {len(eq)} equity rows to {equity_csv}")


def _print_target_reach() -> None:
    """The latest tuned version per pair/timeframe: how far the tuner's target is (nothing before the first tuning or
    on a warehouse tuned by code older than the ``best_*`` columns)."""
    th = read(
        "SELECT * FROM signals.setup_thresholds WHERE valid_from = (SELECT max(valid_from) FROM signals.setup_thresholds)"
    )
    if th.empty or "best_winrate" not in th:
        return
    reach = target_reach(th).assign(valid_from=lambda d: pd.to_datetime(d["valid_from"], unit="ms"))
    table(
        reach,
        f"Tuner target {th['target_winrate'].iloc[0]:.0%}: best win rate reachable with at least "
        f"{int(th['min_closed_samples'].iloc[0])} closed signals, and its coverage (gap_pp = target - best)",
    )


@app.command("db-inspect")
def db_inspect() -> None:
    """Read-only, runs no job: row counters of the setup scanner's tables."""
    rows = []
    for t in SETUP_TABLES + ["signals.setup_retro"]:
        col = "valid_from" if t == "signals.setup_thresholds" else "ts"
        try:
            r = read(f"SELECT count(*) AS n, min({col}) AS first, max({col}) AS last FROM {t}").iloc[0]
            rows.append(
                {
                    "table": t,
                    "rows": int(r["n"]),
                    "first": pd.Timestamp(r["first"], unit="ms") if pd.notna(r["first"]) else None,
                    "last": pd.Timestamp(r["last"], unit="ms") if pd.notna(r["last"]) else None,
                }
            )
        except Exception as e:  # noqa: BLE001 - a table not built yet is a counter of 0, not an error
            if "does not exist" not in str(e) and "Binder Error" not in str(e):
                raise
            rows.append({"table": t, "rows": 0, "first": None, "last": None})
    table(pd.DataFrame(rows), "Setup scanner tables")
    st = read("SELECT status, count(*) AS n FROM signals.setups GROUP BY ALL ORDER BY n DESC")
    table(st, "signals.setups by status")
