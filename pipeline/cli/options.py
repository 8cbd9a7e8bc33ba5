"""``trader options …`` — the options desk's commands (seed 000 "Commands"). ``build-features`` and
``generate-signal`` run ``options_desk_job``, ``train-models`` runs ``options_models_job``; the others read the
warehouse read-only (or the serving snapshot while a run holds the writer) and print rich tables."""

from __future__ import annotations

import time

import pandas as pd
import typer

from pipeline.cli.common import console, fmt, pct, print_checks, read, run_job, table
from pipeline.config import settings
from pipeline.core.options_explain import (
    OVERLAY_INPUTS,
    age_lines,
    decision_block,
    is_unavailable,
    model_lines,
    regime_inputs,
    unavailable_lines,
)

app = typer.Typer(help="Options desk: on-chain fusion signals and option trades (BTC).", no_args_is_help=True)


def _run_desk() -> bool:
    return run_job("options_desk_job").success


@app.command("build-features")
def build_features() -> None:
    """Run options_desk_job: on-chain features, p_long/p_short models, the daily signals and trades and the evaluation
    (the options_desk group); republishes the serving snapshot."""
    t0 = time.time()
    ok = _run_desk()
    f = read("SELECT count(*) AS days, min(date) AS first, max(date) AS last FROM features.onchain")
    table(f, "features.onchain")
    console.print(
        f"[{'green' if ok else 'red'}]options_desk {'succeeded' if ok else 'FAILED'}[/] in {time.time() - t0:.1f}s"
    )
    if not ok:
        raise typer.Exit(1)


def _input_lines(features: pd.DataFrame, r: pd.Series, day: str) -> list[str]:
    """``--verbose``: the feature values each regime (and the overlays) were read from on ``day``, with thresholds."""
    f = features[pd.to_datetime(features["date"]) == pd.Timestamp(day)]
    if f.empty:
        return ["", "--- INDICATOR INPUTS ---", f"   no features.onchain row for {day}"]
    row = f.iloc[0]
    rp = settings().options_desk.regimes
    thresholds = {
        "mdia": f"z <= {rp.mdia_strong_inflow} strong_inflow, <= {rp.mdia_inflow} inflow, >= {rp.mdia_distribution} "
        f"distribution (z over {rp.mdia_z_window} d)",
        "whales": f"30d change >= +/-{rp.whale_count_step:.1%} per count (primary); exchange supply "
        f"-{rp.whale_proxy_strong:.1%} / -{rp.whale_proxy_step:.1%} accumulation, +{rp.whale_proxy_step:.1%} / "
        f"+{rp.whale_proxy_strong:.1%} distribution (proxy)",
        "mvrv_ls": f"z over {rp.ls_z_window} d; {rp.ls_slope_days}-day z slope beyond +/-{rp.ls_slope_min} is up/down; "
        f"zero cross within {rp.ls_cross_days} d confirms; z >= {rp.ls_warning_z} falling = warning, "
        f"<= {rp.ls_bear_z} falling = bear",
    }
    val = lambda v: "n/a" if v is None or pd.isna(v) else f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.0f}"  # noqa: E731
    out = ["", "--- INDICATOR INPUTS (features.onchain) ---"]
    for ind, header, sources in regime_inputs(row, r):
        out.append(f"{ind.upper()}: {header}   [{thresholds[ind]}]")
        for src, values in sources:
            out.append(f"   {src}: " + ", ".join(f"{c} = {val(v)}" for c, v in values))
    out.append("OVERLAYS: " + ", ".join(f"{c} = {val(row.get(c))}" for c in OVERLAY_INPUTS))
    return out


def _signal_block(date: str | None, verbose: bool = False) -> None:
    span = read("SELECT min(date) AS first, max(date) AS last, max(available_at) AS ready FROM signals.options_daily")
    if span.empty or pd.isna(span["last"].iloc[0]):
        console.print("[red]no signals stored yet; run `trader options build-features`[/]")
        raise typer.Exit(1)
    first, last = (str(pd.Timestamp(span[c].iloc[0]).date()) for c in ("first", "last"))
    d = read("SELECT * FROM signals.options_daily WHERE date = ?", [date or last])
    if d.empty:
        console.print(f"[red]no signal for {date}: stored days are {first} .. {last}[/]")
        raise typer.Exit(1)
    r = d.iloc[0]
    day = str(pd.Timestamp(r["date"]).date())
    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    cfg = settings().options_desk
    trades = read("SELECT * FROM signals.options_trades WHERE date = ? ORDER BY trade_type", [day])
    unavailable = is_unavailable(r)
    features = (
        read("SELECT * FROM features.onchain WHERE date <= ? ORDER BY date", [day])
        if verbose or unavailable
        else pd.DataFrame()
    )
    lines = decision_block(
        r,
        trades,
        age=age_lines(day, last, span["ready"].iloc[0], today, cfg.max_data_age_days),
        models=_model_lines(r, day, cfg.models),
        unavailable=unavailable_lines(r, features, day) if unavailable else [],
        inputs=_input_lines(features, r, day) if verbose else [],
    )
    console.print("\n".join(lines), highlight=False, markup=False)


def _model_lines(r: pd.Series, day: str, m) -> list[str]:
    """The seed's model block (:func:`pipeline.core.options_explain.model_lines`) with, for a score without a
    champion value, the latest candidate's score of the day read from ``ml.options_scores`` (``m``: the
    ``options_desk.models`` section)."""
    candidates = {}
    for t in ("p_long", "p_short"):
        if r.get(t) is not None and pd.notna(r.get(t)):
            continue
        cand = read(
            """SELECT s.p_cal, r.model_version, r.promotion_reasons FROM ml.options_scores s JOIN ml.model_runs r
                       USING (mlflow_run_id) WHERE s.model_name = ? AND s.date = ? ORDER BY r.trained_at DESC LIMIT 1""",
            [m.names[t], day],
        )
        candidates[t] = None if cand.empty else tuple(cand[["p_cal", "model_version", "promotion_reasons"]].iloc[0])
    return model_lines(r, m.names, (m.call_threshold, m.put_threshold), "display", candidates)


@app.command("score-latest")
def score_latest(
    date: str = typer.Option(None, "--date", help="Another stored day (YYYY-MM-DD)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Read-only, runs no job: the latest (or a given) day's stored signal in the seed's sample-output layout, with the data's age against
    today's UTC date (a warning when stale) and why any indicator is unavailable; --verbose adds the feature values
    each regime was read from."""
    _signal_block(date, verbose)


@app.command("generate-signal")
def generate_signal(
    date: str = typer.Option(None, "--date", help="YYYY-MM-DD (default: latest)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run options_desk_job (steps whose inputs are unchanged are skipped), republish, and show the latest (or a given)
    day's signal with the data's age; --verbose adds the feature values behind each regime."""
    if not _run_desk():
        console.print("[red]options_desk assets failed[/]")
        raise typer.Exit(1)
    _signal_block(date, verbose)


@app.command("train-models")
def train_models(
    force: bool = typer.Option(False, "--force", help="Retrain even if the inputs are unchanged."),
) -> None:
    """Run options_models_job: fit p_long / p_short (walk-forward, calibrated), register them in MLflow, promote those
    that pass their gate, then refresh the daily signals and trades so they use the champions."""
    t0 = time.time()
    r = run_job("options_models_job", {"ops": {"ml__options_direction": {"config": {"force": force}}}})
    print_checks([r])
    names = list(settings().options_desk.models.names.values())
    runs = read(
        """SELECT model_name, model_version, trained_at, n_rows, n_folds, round((metrics->>'$.cal.auc')::DOUBLE, 4) AS auc,
                   round((metrics->>'$.cal.brier')::DOUBLE, 4) AS brier, round((metrics->>'$.cal.brier_base')::DOUBLE, 4) AS brier_base,
                   round((metrics->>'$.cal.ece')::DOUBLE, 4) AS ece, promotion_passed, promoted FROM ml.model_runs
                   WHERE model_name IN (SELECT unnest(?::VARCHAR[]))
                   QUALIFY row_number() OVER (PARTITION BY model_name ORDER BY trained_at DESC) = 1 ORDER BY model_name""",
        [names],
    )
    table(runs, "Options models: latest versions (out-of-sample, calibrated)")
    console.print(
        f"[{'green' if r.success else 'red'}]train-models {'succeeded' if r.success else 'FAILED'}[/] in "
        f"{time.time() - t0:.1f}s (a failed gate is a warning: that model's champion stays as it was)"
    )
    if not r.success:
        raise typer.Exit(1)


#: fraction columns of the evaluation and whether they are signed returns (printed as +x %) or rates (x %)
PCT_COLUMNS = {
    "option_hit_rate": False,
    "direction_hit_rate": False,
    "avg_option_ret": True,
    "median_option_ret": True,
    "avg_underlying_ret": True,
    "total_return": True,
    "annual_return": True,
    "max_drawdown": True,
    "avg_fwd_30d": True,
    "up_share": False,
}


def percent_table(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every :data:`PCT_COLUMNS` column (fractions) as percentage strings, counts as integers."""
    out = df.copy()
    for c, signed in PCT_COLUMNS.items():
        if c in out:
            out[c] = out[c].map(lambda v, s=signed: pct(v, s))
    for c in ("trades", "n_trades", "without_outcome"):
        if c in out:
            out[c] = pd.to_numeric(out[c]).astype("Int64")
    return out


@app.command("report")
def report() -> None:
    """Read-only, runs no job: the model-based evaluation of the taken trades: per state (tactical hedges as their own group), per year, per
    trade type, versus buy-and-hold BTC and always-on calls/puts; rates and returns in percent."""
    import json

    run = read("SELECT * FROM backtest.runs WHERE run_id = 'options_desk-fusion_options'")
    if run.empty:
        console.print("[red]no evaluation yet; run `trader run` or `trader options build-features`[/]")
        raise typer.Exit(1)
    r = run.iloc[0]
    per = json.loads(r["per_symbol"])
    titles = {
        "by_state": "Taken trades by fusion state (tactical_hedge = TACTICAL_PUT hedges bought inside bull states)",
        "by_year": "Taken trades by year of entry",
        "by_trade_type": "Taken trades by trade type",
    }
    for k, title in titles.items():
        if k in per:
            table(percent_table(pd.DataFrame(per[k])), f"{title} — option P&L is MODEL-BASED")
    m, b = json.loads(r["metrics"]), json.loads(r["benchmark"])
    keys = ("option_hit_rate", "direction_hit_rate", "total_return", "annual_return", "sharpe", "max_drawdown", "psr")
    rows = [
        {"": "fusion trades", "n_trades": m.get("n_trades"), "without_outcome": m.get("n_without_outcome")}
        | {k: m.get(k) for k in keys}
    ]
    rows += [
        {"": k, "n_trades": v.get("n_trades"), "without_outcome": None} | {c: v.get(c) for c in keys}
        for k, v in b.items()
    ]
    table(percent_table(pd.DataFrame(rows)), f"Versus benchmarks ({fmt(r['period_start'])} .. {fmt(r['period_end'])})")
    console.print(
        "[dim]Hit rates and averages are over the trades with an outcome (a positive model premium and an expiry "
        "inside the data); return, Sharpe, drawdown and PSR are of the account marked daily with the model (2 % of "
        f"equity x size in premium per trade; buy-and-hold: BTC itself), on daily UTC closes. {r['sample']}[/]",
        highlight=False,
    )


@app.command("list-trades")
def list_trades(
    year: int = typer.Option(None, "--year"),
    all_: bool = typer.Option(False, "--all", help="Include cooldown-suppressed."),
) -> None:
    """Read-only, runs no job: trade opportunities with sizing (taken after cooldowns unless --all)."""
    where = ["1=1"] + ([f"year(date) = {int(year)}"] if year else []) + ([] if all_ else ["cooldown_status = 'taken'"])
    t = read(
        "SELECT date, trade_type, structure, strike_long, strike_short, expiry, dte, size, confidence, cooldown_status, "
        "reason, model_version FROM signals.options_trades WHERE " + " AND ".join(where) + " ORDER BY date, trade_type"
    )
    table(t, f"Options trades {year or ''} ({len(t)})")


@app.command("diagnose-notrade")
def diagnose_notrade(year: int = typer.Option(None, "--year")) -> None:
    """Read-only, runs no job: why days are NO_TRADE, counts by reason and by regime combination."""
    w = f"AND year(date) = {int(year)}" if year else ""
    table(
        read(
            f"SELECT state_reason, count(*) AS days FROM signals.options_daily WHERE state = 'no_trade' {w} "
            "GROUP BY ALL ORDER BY days DESC"
        ),
        "NO_TRADE days by reason",
    )
    table(
        read(
            f"SELECT mdia_regime, whale_regime, mvrv_ls_regime, count(*) AS days FROM signals.options_daily "
            f"WHERE state = 'no_trade' {w} GROUP BY ALL ORDER BY days DESC LIMIT 15"
        ),
        "Most frequent NO_TRADE combinations",
    )


@app.command("analyze-fusion")
def analyze_fusion() -> None:
    """Read-only, runs no job: states, scores and overlays per year; forward BTC return by state (30 days, from the
    daily close)."""
    table(
        read(
            "SELECT year(date) AS year, state, count(*) AS days, round(avg(score), 2) AS avg_score FROM signals.options_daily "
            "GROUP BY ALL ORDER BY year, days DESC"
        ),
        "States per year",
    )
    table(
        percent_table(
            read("""SELECT state, count(*) AS days, avg(fwd) AS avg_fwd_30d, avg((fwd > 0)::INT) AS up_share
                   FROM (SELECT state, spot_usd, lead(spot_usd, 30) OVER (ORDER BY date) / spot_usd - 1 AS fwd
                         FROM signals.options_daily) WHERE fwd IS NOT NULL GROUP BY ALL ORDER BY days DESC""")
        ),
        "Forward 30-day BTC return by state (evaluation only; uses future prices)",
    )
    table(
        read(
            "SELECT overlay, count(*) AS days FROM signals.options_daily WHERE direction != 0 GROUP BY ALL ORDER BY days DESC"
        ),
        "Overlays on trade days",
    )


@app.command("analyze-neutral")
def analyze_neutral() -> None:
    """Read-only, runs no job: MVRV-LS neutral terrain, how often, with which MDIA/whale regimes, and what followed."""
    table(
        percent_table(
            read("""SELECT mdia_regime, whale_regime, count(*) AS days, avg(fwd) AS avg_fwd_30d
                   FROM (SELECT *, lead(spot_usd, 30) OVER (ORDER BY date) / spot_usd - 1 AS fwd FROM signals.options_daily)
                   WHERE mvrv_ls_regime = 'neutral' GROUP BY ALL ORDER BY days DESC LIMIT 20""")
        ),
        "MVRV-LS neutral days",
    )
