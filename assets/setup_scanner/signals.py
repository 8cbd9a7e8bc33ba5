"""Group ``setup_scanner``: tuned thresholds, gated signals with their execution, and the gated-vs-ungated backtest.

* ``signals/setup_thresholds`` — point-in-time threshold versions (every ``tune_every_days``, per pair/timeframe,
  :func:`pipeline.core.setup_gating.tune_schedule`) on the scores of the meta-model in force.
* ``signals/setups`` — every valid candidate scored (p(win), EV), thresholds resolved (regime → tuned → configured
  → global), gated, and the passing signals executed by the shared simulator (one position per symbol × timeframe)
  with their status and outcome.
* ``backtest/setup_scanner`` — gated versus ungated signals versus buy-and-hold over the same out-of-sample period,
  with costs; rows in ``backtest.*`` with desk ``setup_scanner``.

**Model in force** = the meta-model's ``@champion`` (latest promoted ``ml.model_runs`` row). Candidates it scored
at training time use their stored point-in-time scores; newer candidates are scored live by the champion loaded
from MLflow. Without a champion (or with ``meta.enabled: false``) the gate is **rules only**: every valid candidate
passes and ``why`` says so.
"""
import hashlib
import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import POOL, md_table, png_md
from assets.keys import (ACCOUNTING_RECONCILES, GROUP_SETUPS, SETUP_BACKTEST, SETUP_CANDIDATES, SETUP_META, SETUP_THRESHOLDS, SETUPS,
                         STATUSES_VALID)
from assets.setup_scanner.candidates import load_bars
from assets.setup_scanner.meta import technical_for
from models.setup_meta import META_FEATURES, meta_dataset
from pipeline.config import settings
from pipeline.core.backtest import buy_and_hold, combine_sleeves, equity_plot, performance
from pipeline.core.setup_gating import (expected_value_pct, gate, regime_key, resolve_threshold, threshold_in_force,
                                        tune_schedule, tune_threshold)
from pipeline.core.setups import execution_status, one_signal_per_bar, signal_arrays
from pipeline.core.simulator import SimParams, simulate
from pipeline.research import clean_metrics
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io

CODE_VERSION = "1"
WEEK_MS = 7 * 86_400_000


def model_in_force(con) -> pd.Series | None:
    """The champion's ``ml.model_runs`` row (None without one or when the meta-model is disabled)."""
    m = settings().setup_scanner.meta
    if not m.enabled:
        return None
    r = io.read_df(con, "SELECT * FROM ml.model_runs WHERE model_name = ? AND promoted ORDER BY trained_at DESC LIMIT 1", [m.name])
    return None if r.empty else r.iloc[0]


def scored_candidates(con, mlflow: MlflowTracking, champ: pd.Series | None) -> pd.DataFrame:
    """Valid candidates with ``p_win`` (calibrated, NaN in rules-only mode or before the first calibrated fold),
    ``ev_pct`` and ``scored_by`` (``stored`` / ``live`` / None)."""
    cfg = settings()
    g = cfg.setup_scanner.gating
    c = io.read_df(con, "SELECT * FROM signals.setup_candidates WHERE reject_reason IS NULL ORDER BY symbol, timeframe, ts")
    c["p_win"], c["scored_by"] = np.nan, None
    if champ is not None:
        s = io.read_df(con, "SELECT candidate_id, p_cal, fold FROM ml.setup_meta_scores WHERE mlflow_run_id = ?",
                       [champ.mlflow_run_id])
        c = c.merge(s, on="candidate_id", how="left")
        c["p_win"] = c["p_cal"]
        c.loc[c["fold"].notna(), "scored_by"] = "stored"
        new = c[c["fold"].isna() & (c["ts"] > pd.Timestamp(champ.data_end).value // 1_000_000)]
        if len(new):  # candidates newer than the champion's data: score them live with the served model
            import mlflow as mlf
            model = mlf.sklearn.load_model(f"models:/{cfg.setup_scanner.meta.name}@champion")
            x = meta_dataset(new, technical_for(con, cfg.exchange.id, new))
            p = pd.Series(model.predict(x[META_FEATURES]), index=x["candidate_id"].to_numpy())
            hit = c["candidate_id"].isin(p.index)
            c.loc[hit, "p_win"] = c.loc[hit, "candidate_id"].map(p).to_numpy()
            c.loc[hit, "scored_by"] = "live"
        c = c.drop(columns=["p_cal", "fold"])
    c["ev_pct"] = expected_value_pct(c["p_win"], c["side"], c["entry"], c["sl"], c["tp1"], c["tp2"], g)
    return c


def gate_candidates(con, mlflow: MlflowTracking, start_ts: int | None = None, end_ts: int | None = None):
    """Score and gate the valid candidates exactly as live: returns ``(frame, mode, champion row)``.

    ``frame``: the scored candidates (out of sample only when a champion gates: candidates before its first
    calibrated fold are dropped) with ``threshold``, ``threshold_source``, ``passed`` and ``why``; ``mode`` is
    ``ev`` / ``p_win`` / ``rules_only``.
    """
    g = settings().setup_scanner.gating
    champ = model_in_force(con)
    c = scored_candidates(con, mlflow, champ)
    if start_ts is not None:
        c = c[c["ts"] >= start_ts]
    if end_ts is not None:
        c = c[c["ts"] <= end_ts]
    if champ is None:
        return c.assign(threshold=np.nan, threshold_source="none", passed=True,
                        why="rules only: no @champion meta-model (or meta.enabled false); every valid candidate passes"), \
            "rules_only", None
    tuned_rows = io.read_df(con, "SELECT * FROM signals.setup_thresholds") if io.table_exists(con, "signals.setup_thresholds") else None
    c = c[c["p_win"].notna()].copy()
    tuned = threshold_in_force(tuned_rows, c["symbol"], c["timeframe"], c["ts"])
    thr, src = resolve_threshold(c["symbol"], c["timeframe"], regime_key(c["trend_regime"], c["volatility_level"]), g, tuned)
    c["threshold"], c["threshold_source"] = thr, src
    c["passed"] = gate(c["p_win"], c["ev_pct"], thr, g)
    score = c["ev_pct"] if g.use_ev else c["p_win"]
    c["why"] = (("EV % " if g.use_ev else "p(win) ") + score.round(4).astype(str) + np.where(c["passed"], " >= ", " < ")
                + c["threshold"].round(4).astype(str) + " (" + c["threshold_source"] + ")")
    return c, ("ev" if g.use_ev else "p_win"), champ


def chain_fingerprint(con) -> str:
    """Inputs of thresholds, signals and backtest: the candidates' and the meta-model's input fingerprints, the
    champion in force and the ``setup_scanner`` configuration (unchanged -> those assets skip their work)."""
    champ = model_in_force(con)
    return io.inputs_fingerprint(
        con, "SELECT asset, fingerprint FROM ops.asset_inputs WHERE asset IN ('signals.setup_candidates', 'ml.setup_meta') ORDER BY 1",
        extra=settings().setup_scanner.model_dump_json() + CODE_VERSION + ("" if champ is None else str(champ.mlflow_run_id)))


def _unchanged(con, table: str, fp: str) -> bool:
    return io.table_exists(con, table) and io.inputs_unchanged(con, table, fp)


def _weekly(start_ms: int, end_ms: int) -> np.ndarray:
    """Mondays 00:00 UTC in ``(start, end]`` (epoch ms)."""
    first = pd.Timestamp(start_ms, unit="ms").normalize()
    first += pd.Timedelta(days=(7 - first.weekday()) % 7 or 7)
    return np.arange(first.value // 1_000_000, end_ms + 1, WEEK_MS, dtype=np.int64)


@dg.asset(
    key=SETUP_THRESHOLDS, group_name=GROUP_SETUPS, pool=POOL, deps=[SETUP_META], kinds={"duckdb"},
    code_version=CODE_VERSION,
    description="Point-in-time tuned thresholds: every tune_every_days (weekly) and per pair/timeframe, the lowest "
                "EV (or p(win)) threshold whose closed signals of the last window_days reach target_winrate_pct with "
                "at least min_closed_samples, on the scores of the meta-model in force. Versioned by valid_from.",
)
def signals_setup_thresholds(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                             mlflow: MlflowTracking) -> dg.MaterializeResult:
    cfg = settings()
    sc, g = cfg.setup_scanner, cfg.setup_scanner.gating
    with warehouse.connect() as con:
        fp = chain_fingerprint(con)
        if _unchanged(con, "signals.setup_thresholds", fp):
            return dg.MaterializeResult(metadata={"status": "candidates, champion and configuration unchanged; not re-tuned"})
        champ = model_in_force(con)
        if champ is None:
            io.record_inputs(con, "signals.setup_thresholds", fp)
            io.replace_table(con, "signals.setup_thresholds", pd.DataFrame(columns=[
                "symbol", "timeframe", "valid_from", "mode", "threshold", "coverage", "winrate", "n_pass", "n",
                "target_winrate", "min_closed_samples", "model_version", "tuned_at"]).astype({"valid_from": "int64"}))
            return dg.MaterializeResult(metadata={"status": "no @champion meta-model: gating is rules only, nothing to tune"})
        c = scored_candidates(con, mlflow, champ)
        lab = c[c["p_win"].notna() & c["win"].notna()].assign(score=lambda d: d["ev_pct"] if g.use_ev else d["p_win"])
        if lab.empty:
            raise dg.Failure("no scored, closed candidates to tune on")
        as_of = _weekly(int(lab["ts"].min()), int(c["ts"].max()))
        step = max(1, sc.tune_every_days // 7)
        rows = tune_schedule(lab, as_of[::step] if step > 1 else as_of, g)
        rows = rows.assign(model_version=str(champ.model_version), tuned_at=io.now_utc())
        io.replace_table(con, "signals.setup_thresholds", rows)
        io.record_inputs(con, "signals.setup_thresholds", fp)
    last = rows[rows["valid_from"] == rows["valid_from"].max()]
    end = int(c["ts"].max())
    recent = lab[(lab["exit_ts"] < end) & (lab["ts"] >= end - g.window_days * 86_400_000)]
    pooled = tune_threshold(recent["score"], recent["win"], g.target_winrate_pct / 100, g.min_closed_samples)
    show = last.assign(valid_from=pd.to_datetime(last["valid_from"], unit="ms"))[
        ["symbol", "timeframe", "valid_from", "threshold", "coverage", "winrate", "n_pass", "n"]]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows), "versions": int(rows["valid_from"].nunique()), "model_version": str(champ.model_version),
        "mode": "EV %" if g.use_ev else "p(win)", "target_winrate": g.target_winrate_pct / 100,
        "tuned_pairs_latest": int(last["threshold"].notna().sum()), "latest_thresholds": md_table(show.round({"threshold": 4, "coverage": 4, "winrate": 4}), 40),
        "coverage_vs_winrate": md_table(pooled["table"].round(4), 40)})


def sim_params(init_cash: float) -> SimParams:
    """Simulator parameters of the setup scanner (seed ``execution`` + ``risk``; costs from ``gating.costs``)."""
    sc = settings().setup_scanner
    s, r, e, c = sc.signals, sc.risk, sc.execution, sc.gating.costs
    return SimParams(init_cash=init_cash, size_fraction=1.0, risk_per_trade=r.risk_pct / 100, leverage=r.max_leverage,
                     maintenance_margin=r.maintenance_margin_pct / 100, tp1_fraction=e.tp1_fraction,
                     breakeven_after_tp1=e.breakeven_after_tp1, trail_atr=e.trail_atr if e.trail_atr > 0 else float("nan"),
                     trail_after_tp1=True, max_bars=s.max_hold_candles, limit_validity_bars=s.validity_candles,
                     fee_maker_bps=100 * c.maker_fee_pct, fee_taker_bps=100 * (c.taker_fee_pct),
                     slippage_bps=100 * c.slippage_pct, allow_reverse=False)


def simulate_signals(con, signals: pd.DataFrame, score: str, init_cash_each: float, start_ts: int | None = None,
                     bars_cache: dict | None = None):
    """Run each symbol × timeframe's signals through the simulator (from ``start_ts``).

    ``bars_cache``: optional dict reused across calls so each series' candles are read once (the backtest simulates
    the gated and the ungated book on the same bars).

    Returns ``(statuses aligned with signals, {sleeve: SimResult}, {symbol: closes})``.
    """
    cfg = settings()
    params = sim_params(init_cash_each)
    parts, sleeves, closes = [], {}, {}
    for (sym, tf), g in signals.groupby(["symbol", "timeframe"], sort=True):
        if bars_cache is not None and (sym, tf) in bars_cache:
            b = bars_cache[(sym, tf)]
        else:
            b = load_bars(con, cfg.exchange.id, sym, tf)
            if bars_cache is not None:
                bars_cache[(sym, tf)] = b
        if start_ts is not None:
            b = b[b["ts"] >= start_ts].reset_index(drop=True)
        if b.empty:
            continue
        g = g.assign(bar=np.searchsorted(b["ts"].to_numpy(np.int64), g["ts"].to_numpy(np.int64)))
        g = g[(g["bar"] < len(b))]
        one = one_signal_per_bar(g, score)
        arr = signal_arrays(len(b), one, cfg.setup_scanner.risk.max_leverage)
        res = simulate(b, arr.pop("signal"), params, **arr)
        st = execution_status(g["bar"].to_numpy(), len(b), res.trades, res.orders, cfg.setup_scanner.signals.validity_candles)
        st.index = g.index
        # the losing side of a same-bar pair was never sent to the simulator
        chosen = g["candidate_id"].isin(one["candidate_id"]).to_numpy()
        st.loc[~chosen, ["status", "entry_ts", "exit_ts"]] = ["SKIPPED", -1, -1]
        parts.append(st)
        sleeves[f"{sym}|{tf}"] = res
        res.trades.insert(0, "symbol", sym)
        res.trades.insert(1, "timeframe", tf)
        if tf == "1h" or sym not in closes:
            closes[sym] = b[["ts", "close"]]
    out = pd.concat(parts) if parts else pd.DataFrame(columns=["status", "entry_ts", "exit_ts"])
    return out.reindex(signals.index), sleeves, closes


@dg.asset(
    key=SETUPS, group_name=GROUP_SETUPS, pool=POOL, deps=[SETUP_CANDIDATES, SETUP_META, SETUP_THRESHOLDS],
    kinds={"duckdb", "numba"}, code_version=CODE_VERSION,
    check_specs=[dg.AssetCheckSpec(STATUSES_VALID, asset=SETUPS, blocking=True,
                                   description="Every signal has a known status; closed ones have an exit after their "
                                               "entry; every signal passed its gate.")],
    description="Gated signals: valid candidates with p(win) of the meta-model in force, EV after costs, the "
                "threshold used and its source (regime > tuned > configured > global), why, and the execution "
                "through the shared simulator: status NEW / OPEN / TP / SL / TP1_TRAIL / TIMEOUT / EXPIRED / "
                "REJECTED / SKIPPED, entry and exit, net PnL.",
)
def signals_setups(context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowTracking) -> dg.MaterializeResult:
    sc = settings().setup_scanner
    with warehouse.connect() as con:
        fp = chain_fingerprint(con)
        if _unchanged(con, "signals.setups", fp):
            return dg.MaterializeResult(metadata={"status": "candidates, champion and configuration unchanged; not re-gated"},
                                        check_results=[dg.AssetCheckResult(check_name=STATUSES_VALID, passed=True,
                                                                           metadata={"note": "unchanged"})])
        c, mode, champ = gate_candidates(con, mlflow)
        start = int(c["ts"].min()) if champ is not None and len(c) else None
        sig = c[c["passed"]].copy()
        n_sleeves = max(1, c.groupby(["symbol", "timeframe"]).ngroups)  # same capital base as backtest/setup_scanner
        st, _, _ = simulate_signals(con, sig, "p_win" if mode == "p_win" else "ev_pct", sc.init_cash / n_sleeves, start)
        sig = pd.concat([sig.drop(columns=["status", "exit_ts", "exit_price", "net_pct", "fill_ts", "win", "tp1_hit"],
                                  errors="ignore"),
                         c.loc[sig.index, ["status", "net_pct", "win"]].rename(columns={"status": "outcome_alone",
                                                                                       "net_pct": "net_pct_alone",
                                                                                       "win": "win_alone"}), st], axis=1)
        sig["gate_mode"] = mode
        sig["model_version"] = None if champ is None else f"{sc.meta.name} v{champ.model_version}"
        sig["scanned_at"] = io.now_utc()
        io.replace_table(con, "signals.setups", sig.reset_index(drop=True))
        io.record_inputs(con, "signals.setups", fp)
    bad = int(sig["status"].isna().sum() + ((sig["exit_ts"] >= 0) & (sig["exit_ts"] < sig["entry_ts"])).sum() + (~sig["passed"]).sum())
    closed = sig[sig["status"].isin(["TP", "SL", "TP1_TRAIL", "TIMEOUT"])]
    summary = pd.DataFrame([
        {"set": "candidates scored (OOS)", "n": len(c), "win_rate_alone": c["win"].mean(), "avg_net_pct_alone": c["net_pct"].mean()},
        {"set": "gated signals", "n": len(sig), "win_rate_alone": sig["win_alone"].mean(), "avg_net_pct_alone": sig["net_pct_alone"].mean()}])
    return dg.MaterializeResult(
        metadata={"dagster/row_count": len(sig), "gate_mode": mode, "model_version": sig["model_version"].iloc[0] if len(sig) else None,
                  "pass_rate": float(len(sig) / len(c)) if len(c) else None,
                  "statuses": md_table(sig["status"].value_counts().rename_axis("status").reset_index()),
                  "threshold_sources": md_table(sig["threshold_source"].str.split(":").str[0].value_counts().rename_axis("source").reset_index()),
                  "gated_vs_all_scored": md_table(summary.round(4)),
                  "executed_win_rate": float((closed["net_pct"] > 0).mean()) if len(closed) else None,
                  "executed_avg_net_pct": float(closed["net_pct"].mean()) if len(closed) else None,
                  "latest": md_table(sig.sort_values("ts").tail(10).assign(ts=lambda d: pd.to_datetime(d["ts"], unit="ms"))[
                      ["symbol", "timeframe", "ts", "side", "entry", "sl", "tp1", "tp2", "p_win", "ev_pct", "status"]].round(
                      {"p_win": 4, "ev_pct": 4}))},
        check_results=[dg.AssetCheckResult(check_name=STATUSES_VALID, passed=bad == 0, severity=dg.AssetCheckSeverity.ERROR,
                                           metadata={"bad_rows": bad})])
