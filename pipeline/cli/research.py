"""``trader train | backtest | walk-forward`` — the research baseline: ``train`` and ``backtest`` run
``train_job`` / ``backtest_job``; ``walk-forward`` is read-only (nothing logged)."""

from __future__ import annotations

import time

import pandas as pd
import typer
from rich.table import Table

from pipeline.cli import common
from pipeline.cli.common import console
from pipeline.config import settings
from warehouse import readers

app = typer.Typer()


def _print_folds(folds, title: str) -> None:
    """Per-fold table: spans (UTC dates), sizes, purged rows, OOS AUC/Brier/ECE."""
    t = Table(title=title)
    cols = [
        "fold",
        "train_start",
        "train_end",
        "test_start",
        "test_end",
        "n_train",
        "n_test",
        "n_purged",
        "auc_raw",
        "auc_cal",
        "brier_cal",
        "base_rate_cal",
        "ece_cal",
    ]
    for c in cols:
        t.add_column(c.replace("_", " "), justify="right")
    for r in folds.itertuples():
        t.add_row(*[(f"{v:.4f}" if isinstance(v, float) else str(v)[:10]) for v in (getattr(r, c) for c in cols)])
    console.print(t)


def _walk_forward(cfg, train_window, test_window, purge, embargo, expanding):
    """The baseline's purged walk-forward on the stored series, read-only (the one call into the research code, easy
    to repoint): returns ``(windows, run)``; raises ``ValueError`` for a bad window or when no fold fits."""
    from models.baseline import train_baseline
    from pipeline.core.timeframes import timeframe_ms

    b = cfg.research.baseline
    w = b.walk_forward.to_ms(
        timeframe_ms(b.timeframe),
        train=train_window,
        test=test_window,
        purge=purge,
        embargo=embargo,
        expanding=expanding,
    )
    with common.open_readonly() as con:
        series = {s: readers.series(con, cfg.exchange.id, s, b.timeframe) for s in b.train_symbols}
    return w, train_baseline(series, b, w, fit_final=False)


def _folds(mlflow_run_id: str) -> pd.DataFrame:
    with common.open_readonly() as con:
        return readers.folds(con, mlflow_run_id)


@app.command()
def train(force: bool = typer.Option(False, help="Retrain even if features and configuration are unchanged.")) -> None:
    """Run train_job: train the research baseline model (walk-forward, calibration, MLflow), run the promotion gate and
    promote it if it passes; republishes the serving snapshot."""
    t0 = time.time()
    r = common.run_job(
        "train_job", {"ops": {"ml__baseline_direction": {"config": {"force": force}}}} if force else None
    )
    checks_ok = common.print_checks([r])
    md = common.asset_metadata(r, ["ml", "baseline_direction"])
    common.print_md("Out-of-sample scores", md.get("oos_scores"))
    if md.get("mlflow_run_id"):
        _print_folds(
            _folds(md["mlflow_run_id"]),
            f"Folds of MLflow run {md['mlflow_run_id']}",
        )
    ev = common.asset_metadata(r, ["ml", "baseline_gate"])
    common.print_md(f"Promotion gate: {ev.get('verdict', '?')}", ev.get("rules"))
    ch = common.asset_metadata(r, ["ml", "baseline_champion"])
    if ch:
        console.print(f"champion: {ch.get('champion')} -> version {ch.get('version')}")
    console.print(
        f"[{'green' if r.success else 'red'}]train {'succeeded' if r.success else 'FAILED'}[/] in {time.time() - t0:.1f}s"
        + (f" — {md['status']}" if "status" in md else "")
    )
    if not (r.success and checks_ok):
        raise typer.Exit(1)


@app.command()
def backtest(
    strategy: str = typer.Option("baseline", help="Strategy to backtest (this issue ships 'baseline')."),
    fee_bps: float = typer.Option(None, "--fee-bps", help="Taker and maker fee in bps (default: trader.yaml)."),
    slippage_bps: float = typer.Option(None, "--slippage-bps", help="Slippage in bps (default: trader.yaml)."),
    latency: int = typer.Option(None, "--latency", help="Extra bars between decision and fill."),
    threshold: float = typer.Option(None, "--threshold", help="Entry threshold on calibrated p."),
    force: bool = typer.Option(False, help="Re-run even if unchanged."),
) -> None:
    """Run backtest_job: backtest a strategy on the stored out-of-sample predictions and print its metrics next to
    buy-and-hold; republishes the serving snapshot."""
    if strategy != "baseline":
        console.print(f"[red]unknown strategy {strategy!r}; available: baseline[/]")
        raise typer.Exit(2)
    cfg = {
        k: v
        for k, v in {
            "fee_bps": fee_bps,
            "slippage_bps": slippage_bps,
            "latency_bars": latency,
            "enter_threshold": threshold,
            "force": force or None,
        }.items()
        if v is not None
    }
    t0 = time.time()
    r = common.run_job("backtest_job", {"ops": {"backtest__baseline": {"config": cfg}}})
    checks_ok = common.print_checks([r])
    md = common.asset_metadata(r, ["backtest", "baseline"])
    if "status" in md:
        console.print(md["status"])
    for k in ("run_id", "sample", "period", "universe", "costs"):
        if k in md:
            console.print(f"[bold]{k}[/]: {md[k]}")
    common.print_md("Metrics vs buy-and-hold (same period, same universe)", md.get("metrics_vs_buy_and_hold"))
    common.print_md("Per symbol", md.get("per_symbol"))
    console.print(
        f"[{'green' if r.success else 'red'}]backtest {'succeeded' if r.success else 'FAILED'}[/] in {time.time() - t0:.1f}s"
    )
    if not (r.success and checks_ok):
        raise typer.Exit(1)


@app.command("walk-forward")
def walk_forward_cmd(
    train_window: str = typer.Option(None, "--train-window", help="Bars (8760) or duration (365d)."),
    test_window: str = typer.Option(None, "--test-window", help="Bars or duration per test fold."),
    purge: str = typer.Option(None, "--purge", help="Extra purge beyond label overlap (bars or duration)."),
    embargo: str = typer.Option(None, "--embargo", help="Gap before each test fold (bars or duration)."),
    rolling: bool = typer.Option(False, "--rolling", help="Rolling instead of expanding training window."),
) -> None:
    """Read-only, runs no job: the baseline's purged walk-forward with other windows (nothing stored or logged) and
    its per-fold table."""
    cfg = settings()
    t0 = time.time()
    try:
        w, run = _walk_forward(cfg, train_window, test_window, purge, embargo, False if rolling else None)
    except ValueError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1)
    _print_folds(
        run.result.folds,
        f"{cfg.research.baseline.name}: purged walk-forward ({'rolling' if rolling else 'expanding'}), "
        f"train {w.train_ms / 86_400_000:g}d, test {w.test_ms / 86_400_000:g}d, purge {w.purge_ms / 3_600_000:g}h, "
        f"embargo {w.embargo_ms / 3_600_000:g}h",
    )
    s = run.result.scores_cal
    console.print(
        f"OOS calibrated: AUC {s['auc']:.4f}, Brier {s['brier']:.5f} (base rate {s['brier_base']:.5f}), "
        f"ECE {s['ece']:.4f}, rows {int(s['n']):,}; {time.time() - t0:.1f}s"
    )
