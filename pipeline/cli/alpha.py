"""``trader alpha …`` — the alpha portfolio's commands (seed 004, issue 18). ``train`` runs ``alpha_train_job``,
``backtest`` runs ``alpha_portfolio_job``; ``targets``, ``status`` and ``report`` read the warehouse read-only (or the
serving snapshot while a run holds the writer) and print rich tables."""

from __future__ import annotations

import json
import time

import pandas as pd
import typer

from pipeline.cli.common import asset_metadata, console, pct, print_checks, print_md, read, run_job, table

app = typer.Typer(
    help="Alpha portfolio: LightGBM 6h/24h alpha, market regime, tiered 10-pair book (seed 004).",
    no_args_is_help=True,
)

#: the figures report shows per book and benchmark (keys of pipeline.core.metrics.metrics)
REPORT = ("total_return", "annual_return", "volatility", "sharpe", "sortino", "max_drawdown", "turnover", "cost_drag")
PCT = {"total_return", "annual_return", "volatility", "max_drawdown", "cost_drag", "exposure"}


def _done(name: str, r, t0: float, checks_ok: bool = True) -> None:
    ok = r.success and checks_ok
    console.print(f"[{'green' if ok else 'red'}]{name} {'succeeded' if ok else 'FAILED'}[/] in {time.time() - t0:.1f}s")
    if not ok:
        raise typer.Exit(1)


@app.command()
def train(force: bool = typer.Option(False, help="Retrain even if the data and configuration are unchanged.")) -> None:
    """Run alpha_train_job: the 6h and 24h LightGBM models (purged walk-forward, MLflow run and version each), their
    blocking rank-IC gates and @champion, then the scores (signals/alpha_scores); republishes the serving snapshot."""
    t0 = time.time()
    forced = {"config": {"force": True}}
    r = run_job("alpha_train_job", {"ops": {"ml__alpha_6h": forced, "ml__alpha_24h": forced}} if force else None)
    checks_ok = print_checks([r])
    for h in ("6h", "24h"):
        md = asset_metadata(r, ["ml", f"alpha_{h}"])
        if md.get("status"):
            console.print(f"alpha_{h}: {md['status']}")
        if "ic_mean" in md:
            console.print(f"alpha_{h}: out-of-sample rank IC {md['ic_mean']:.4f} (t {md['ic_t']:.2f})")
        print_md(f"alpha_{h}: rank IC per regime", md.get("ic_by_regime"))
    _done("alpha train", r, t0, checks_ok)


@app.command()
def backtest(
    fee_bps: float = typer.Option(None, "--fee-bps", help="Taker fee in bps per side (default: trader.yaml)."),
    slippage_bps: float = typer.Option(None, "--slippage-bps", help="Slippage in bps per side (default: trader.yaml)."),
) -> None:
    """Run alpha_portfolio_job: features, regime, scores, the hourly targets and the backtest of the book on the
    engine, next to equal-weight and BTC buy-and-hold and the research baseline. With --fee-bps / --slippage-bps
    the books are also run at those costs and stored as separate strategies (alpha_book@fee…)."""
    cfg = {k: v for k, v in {"fee_bps": fee_bps, "slippage_bps": slippage_bps}.items() if v is not None}
    t0 = time.time()
    r = run_job("alpha_portfolio_job", {"ops": {"backtest__alpha_portfolio": {"config": cfg}}} if cfg else None)
    checks_ok = print_checks([r])
    md = asset_metadata(r, ["backtest", "alpha_portfolio"])
    if md.get("status"):
        console.print(md["status"])
    for k in ("run_ids", "costs"):
        if k in md:
            console.print(f"[bold]{k}[/]: {md[k]}")
    print_md("Books vs benchmarks", md.get("versus_benchmarks"))
    print_md("Exposure by regime", md.get("exposure_by_regime"))
    _done("alpha backtest", r, t0, checks_ok)


def _at_ms(at: str | None) -> int | None:
    if at is None:
        return None
    try:
        t = pd.Timestamp(at)
    except ValueError as e:
        raise typer.BadParameter(f"--at {at!r} is not a time (e.g. 2026-04-20 or 2026-04-20T13:00)") from e
    return int((t.tz_convert("UTC") if t.tzinfo else t.tz_localize("UTC")).value // 1_000_000)


@app.command()
def targets(
    at: str = typer.Option(None, "--at", help="UTC time: the rebalance at or before it (default: the latest)."),
) -> None:
    """The target weights of one hourly rebalance with the reason per asset (kept, added, dropped_rank, capped_tier,
    capped_risk, capped_sleeve, band_hold, below_min_order, no_positive_score) — "why wasn't X bought?". Runs no job:
    reads signals.alpha_targets."""
    at_ms = _at_ms(at)
    last = read(
        "SELECT max(ts) AS ts FROM signals.alpha_targets" + ("" if at_ms is None else " WHERE ts <= ?"),
        [] if at_ms is None else [at_ms],
    )
    if last.empty or pd.isna(last["ts"].iloc[0]):
        console.print("[red]no alpha targets stored yet; run `trader alpha backtest` (or `trader run`)[/]")
        raise typer.Exit(1)
    ts = int(last["ts"].iloc[0])
    t = read(
        """SELECT symbol, target_weight, current_weight, rank, exp_ret_net, regime, reason
        FROM signals.alpha_targets WHERE ts = ? ORDER BY target_weight DESC, rank, symbol""",
        [ts],
    )
    when = pd.Timestamp(ts, unit="ms")
    regime = t["regime"].iloc[0] if len(t) else "?"
    shown = t.assign(
        target_weight=t["target_weight"].map(pct),
        current_weight=t["current_weight"].map(pct),
        exp_ret_net=t["exp_ret_net"].map(lambda v: "" if pd.isna(v) else f"{1e4 * v:+.1f} bps"),
    )
    table(shown, f"alpha targets decided on the close of the {when:%Y-%m-%d %H:%M} UTC bar (regime {regime})")
    gross = float(t["target_weight"].sum())
    console.print(f"invested {pct(gross)}, cash {pct(1 - gross)}; {int((t['target_weight'] > 0).sum())} positions")


def _latest_runs() -> pd.DataFrame:
    return read(
        """SELECT strategy, run_id, created_at, period_start, period_end, metrics, benchmark FROM backtest.runs
        WHERE desk = 'alpha_portfolio' QUALIFY row_number() OVER (PARTITION BY strategy ORDER BY created_at DESC) = 1
        ORDER BY strategy"""
    )


def _figures(name: str, m: dict) -> dict:
    return {"book": name, **{k: (pct(m.get(k)) if k in PCT else m.get(k)) for k in REPORT}, "dsr": m.get("dsr")}


@app.command()
def report() -> None:
    """The newest backtest of every alpha book (with and without drawdown scaling, and any cost variants) next to its
    benchmarks (equal-weight and BTC buy-and-hold of the same hours, the research baseline): return, volatility,
    Sharpe, Sortino, max drawdown, turnover, cost drag, deflated Sharpe. Runs no job: reads backtest.runs."""
    runs = _latest_runs()
    if runs.empty:
        console.print("[red]no alpha backtest stored yet; run `trader alpha backtest`[/]")
        raise typer.Exit(1)
    rows = [_figures(r.strategy, json.loads(r.metrics or "{}")) for r in runs.itertuples()]
    bench = json.loads(runs["benchmark"].iloc[0] or "{}")
    rows += [_figures(k, v) for k, v in bench.items() if isinstance(v, dict)]
    first = runs.iloc[0]
    table(pd.DataFrame(rows), f"alpha portfolio, {first.period_start:%Y-%m-%d} → {first.period_end:%Y-%m-%d} (1h)")
    console.print("SQL: SELECT strategy, metrics FROM backtest.runs WHERE desk = 'alpha_portfolio'")


@app.command()
def status() -> None:
    """The book at a glance: the market regime now and its share of hours, where the scores come from (model versions
    or the labelled fallback), the latest targets' invested weight and the newest backtest's return and drawdown. Runs
    no job: reads the alpha tables."""
    reg = read(
        """SELECT regime, count(*) AS hours, max(ts) AS last_ts FROM regimes.alpha_market GROUP BY regime
        ORDER BY hours DESC"""
    )
    if reg.empty:
        console.print("[red]no alpha portfolio data yet; run `trader run` or `trader alpha backtest`[/]")
        raise typer.Exit(1)
    now = read("SELECT ts, regime FROM regimes.alpha_market ORDER BY ts DESC LIMIT 1")
    console.print(
        f"regime now: [bold]{now['regime'].iloc[0]}[/] (bar {pd.Timestamp(int(now['ts'].iloc[0]), unit='ms')} UTC)"
    )
    reg["share"] = (reg["hours"] / reg["hours"].sum()).map(pct)
    table(reg[["regime", "hours", "share"]], "regimes.alpha_market: hours per regime")
    src = read(
        """SELECT source, coalesce(model_version, '') AS model_version, count(*) AS rows, max(ts) AS last_ts
        FROM signals.alpha_scores GROUP BY ALL ORDER BY last_ts DESC"""
    )
    if len(src):
        table(src.assign(last_ts=pd.to_datetime(src["last_ts"], unit="ms")), "signals.alpha_scores by source")
    last = read(
        """SELECT ts, sum(target_weight) AS invested, count(*) FILTER (WHERE target_weight > 0) AS positions
        FROM signals.alpha_targets GROUP BY ts ORDER BY ts DESC LIMIT 1"""
    )
    if len(last):
        console.print(
            f"latest targets ({pd.Timestamp(int(last['ts'].iloc[0]), unit='ms')} UTC): "
            f"invested {pct(last['invested'].iloc[0])} in {int(last['positions'].iloc[0])} positions"
        )
    runs = _latest_runs()
    for r in runs.itertuples():
        m = json.loads(r.metrics or "{}")
        console.print(
            f"{r.strategy}: total return {pct(m.get('total_return'), True)}, max drawdown {pct(m.get('max_drawdown'))}, "
            f"Sharpe {m.get('sharpe', float('nan')):.2f}"
        )
