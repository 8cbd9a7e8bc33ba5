"""Group ``setup_scanner``: tuned thresholds and the gated signals with their execution.

* ``signals/setup_thresholds`` — point-in-time tuned threshold versions (every ``tune_every_days``, per
  pair/timeframe, :func:`pipeline.core.setup_gating.tune_schedule`) on the scores of the meta-model in force.
* ``signals/setups`` — every valid candidate scored (p(win), EV), thresholds resolved (regime → tuned → configured
  → global), gated, and the passing signals executed by the shared simulator (one position per symbol × timeframe)
  with their status and outcome.

Scoring, gating and execution are the desk's shared wiring (:mod:`assets.setup_scanner.common`); without a champion
the gate is **rules only**: every valid candidate passes and ``why`` says so.
"""

import dagster as dg
import numpy as np
import pandas as pd

from assets.checks import count_result
from assets.common import POOL, if_unchanged, md_table, rounded
from assets.keys import GROUP_SETUPS, SETUP_CANDIDATES, SETUP_META, SETUP_THRESHOLDS, SETUPS, STATUSES_VALID
from assets.setup_scanner.common import (
    CODE_VERSION,
    chain_fingerprint,
    execute,
    gated_candidates,
    model_in_force,
    scored_candidates,
)
from pipeline.config import settings
from pipeline.core.setup_gating import TUNED_COLUMNS, target_reach, tune_schedule, tune_threshold
from pipeline.core.setup_signals import CLOSED_STATUSES
from pipeline.core.validity import invalid_signals
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io

WEEK_MS = 7 * 86_400_000
THRESHOLD_COLUMNS = [*TUNED_COLUMNS, "model_version", "tuned_at"]


def _weekly(start_ms: int, end_ms: int) -> np.ndarray:
    """Mondays 00:00 UTC in ``(start, end]`` (epoch ms)."""
    first = pd.Timestamp(start_ms, unit="ms").normalize()
    first += pd.Timedelta(days=(7 - first.weekday()) % 7 or 7)
    return np.arange(first.value // 1_000_000, end_ms + 1, WEEK_MS, dtype=np.int64)


def threshold_versions(c: pd.DataFrame, sc, model_version: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(versions, labelled rows)``: the tuner run every ``tune_every_days`` (Mondays) over the scored, closed
    candidates (``score`` = EV % or p(win))."""
    g = sc.gating
    lab = c[c["p_win"].notna() & c["win"].notna()].assign(score=lambda d: d["ev_pct"] if g.use_ev else d["p_win"])
    if lab.empty:
        raise dg.Failure("no scored, closed candidates to tune on")
    as_of = _weekly(int(lab["ts"].min()), int(c["ts"].max()))
    step = max(1, sc.tune_every_days // 7)
    rows = tune_schedule(lab, as_of[::step] if step > 1 else as_of, g)
    return rows.assign(model_version=model_version, tuned_at=io.now_utc()), lab


def _thresholds_report(rows: pd.DataFrame, lab: pd.DataFrame, end: int, g, model_version: str) -> dict:
    last = rows[rows["valid_from"] == rows["valid_from"].max()]
    recent = lab[(lab["exit_ts"] < end) & (lab["ts"] >= end - g.window_days * 86_400_000)]
    pooled = tune_threshold(recent["score"], recent["win"], g.target_winrate_pct / 100, g.min_closed_samples)
    show = last.assign(valid_from=pd.to_datetime(last["valid_from"], unit="ms"))[
        ["symbol", "timeframe", "valid_from", "threshold", "coverage", "winrate", "n_pass", "n"]
    ]
    reach = target_reach(rows).drop(columns="valid_from")
    return {
        "dagster/row_count": len(rows),
        "versions": int(rows["valid_from"].nunique()),
        "model_version": model_version,
        "mode": "EV %" if g.use_ev else "p(win)",
        "target_winrate": g.target_winrate_pct / 100,
        "tuned_pairs_latest": int(last["threshold"].notna().sum()),
        "latest_thresholds": md_table(show, 40),
        "coverage_vs_winrate": md_table(pooled["table"], 40),
        "target_reach": md_table(reach, 40),
        "best_winrate_max": float(reach["best_winrate"].max()) if reach["best_winrate"].notna().any() else None,
    }


@dg.asset(
    key=SETUP_THRESHOLDS,
    group_name=GROUP_SETUPS,
    pool=POOL,
    deps=[SETUP_META],
    kinds={"duckdb"},
    code_version=CODE_VERSION,
    description="Point-in-time tuned thresholds: every tune_every_days (weekly) and per pair/timeframe, the lowest "
    "EV (or p(win)) threshold whose closed signals of the last window_days reach target_winrate_pct with "
    "at least min_closed_samples, on the scores of the meta-model in force. Versioned by valid_from.",
)
def signals_setup_thresholds(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    cfg = settings()
    sc = cfg.setup_scanner
    with warehouse.connect() as con:
        champ = model_in_force(con, sc, mlflow)
        fp = chain_fingerprint(con, sc, champ)
        if skip := if_unchanged(
            context,
            con,
            "signals.setup_thresholds",
            fp,
            "candidates, champion and configuration unchanged; not re-tuned",
            require_table=True,
        ):
            return skip
        if champ is None:
            with io.transaction(con):
                io.record_inputs(con, "signals.setup_thresholds", fp)
                io.replace_table(
                    con,
                    "signals.setup_thresholds",
                    pd.DataFrame(columns=THRESHOLD_COLUMNS).astype({"valid_from": "int64"}),
                )
            return dg.MaterializeResult(
                metadata={"status": "no @champion meta-model: gating is rules only, nothing to tune"}
            )
        c = scored_candidates(con, mlflow, champ, sc, cfg.exchange.id)
        rows, lab = threshold_versions(c, sc, str(champ.model_version))
        with io.transaction(con):
            io.replace_table(con, "signals.setup_thresholds", rows)
            io.record_inputs(con, "signals.setup_thresholds", fp)
    return dg.MaterializeResult(
        metadata=rounded(_thresholds_report(rows, lab, int(c["ts"].max()), sc.gating, str(champ.model_version)))
    )


def executed_signals(c: pd.DataFrame, st: pd.DataFrame, mode: str, model_version: str | None) -> pd.DataFrame:
    """The passing signals with their execution (``st``) and the candidate's outcome taken alone kept beside it."""
    sig = c[c["passed"]]
    sig = pd.concat(
        [
            sig.drop(
                columns=["status", "exit_ts", "exit_price", "net_pct", "fill_ts", "win", "tp1_hit"], errors="ignore"
            ),
            c.loc[sig.index, ["status", "net_pct", "win"]].rename(
                columns={"status": "outcome_alone", "net_pct": "net_pct_alone", "win": "win_alone"}
            ),
            st,
        ],
        axis=1,
    )
    return sig.assign(gate_mode=mode, model_version=model_version, scanned_at=io.now_utc())


def _signals_report(sig: pd.DataFrame, c: pd.DataFrame, mode: str) -> dict:
    closed = sig[sig["status"].isin(CLOSED_STATUSES)]
    summary = pd.DataFrame(
        [
            {
                "set": "candidates scored (OOS)",
                "n": len(c),
                "win_rate_alone": c["win"].mean(),
                "avg_net_pct_alone": c["net_pct"].mean(),
            },
            {
                "set": "gated signals",
                "n": len(sig),
                "win_rate_alone": sig["win_alone"].mean(),
                "avg_net_pct_alone": sig["net_pct_alone"].mean(),
            },
        ]
    )
    latest = sig.sort_values("ts").tail(10).assign(ts=lambda d: pd.to_datetime(d["ts"], unit="ms"))
    return {
        "dagster/row_count": len(sig),
        "gate_mode": mode,
        "model_version": sig["model_version"].iloc[0] if len(sig) else None,
        "pass_rate": float(len(sig) / len(c)) if len(c) else None,
        "statuses": md_table(sig["status"].value_counts().rename_axis("status").reset_index()),
        "threshold_sources": md_table(
            sig["threshold_source"].str.split(":").str[0].value_counts().rename_axis("source").reset_index()
        ),
        "gated_vs_all_scored": md_table(summary),
        "executed_win_rate": float((closed["net_pct"] > 0).mean()) if len(closed) else None,
        "executed_avg_net_pct": float(closed["net_pct"].mean()) if len(closed) else None,
        "latest": md_table(
            latest[["symbol", "timeframe", "ts", "side", "entry", "sl", "tp1", "tp2", "p_win", "ev_pct", "status"]],
            digits=6,  # price levels
        ),
    }


@dg.asset(
    key=SETUPS,
    group_name=GROUP_SETUPS,
    pool=POOL,
    deps=[SETUP_CANDIDATES, SETUP_META, SETUP_THRESHOLDS],
    kinds={"duckdb", "numba"},
    code_version=CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec(
            STATUSES_VALID,
            asset=SETUPS,
            blocking=True,
            description="Every signal has a known status; closed ones have an exit after their "
            "entry; every signal passed its gate.",
        )
    ],
    description="Gated signals: valid candidates with p(win) of the meta-model in force, EV after costs, the "
    "threshold used and its source (regime > tuned > configured > global), why, and the execution "
    "through the shared simulator: status NEW / OPEN / TP / SL / TP1_TRAIL / TIMEOUT / EXPIRED / "
    "REJECTED / SKIPPED, entry and exit, net PnL.",
)
def signals_setups(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    cfg = settings()
    sc = cfg.setup_scanner
    with warehouse.connect() as con:
        fp = chain_fingerprint(con, sc, model_in_force(con, sc, mlflow))
        if skip := if_unchanged(
            context,
            con,
            "signals.setups",
            fp,
            "candidates, champion and configuration unchanged; not re-gated",
            checks=(STATUSES_VALID,),
            require_table=True,
        ):
            return skip
        c, mode, champ = gated_candidates(con, mlflow, sc, cfg.exchange.id)
        start = int(c["ts"].min()) if champ is not None and len(c) else None
        n_sleeves = max(1, c.groupby(["symbol", "timeframe"]).ngroups)  # same capital base as backtest/setup_scanner
        st, _, _ = execute(
            con,
            sc,
            cfg.exchange.id,
            c[c["passed"]].copy(),
            "p_win" if mode == "p_win" else "ev_pct",
            sc.init_cash / n_sleeves,
            start,
        )
        sig = executed_signals(c, st, mode, None if champ is None else f"{sc.meta.name} v{champ.model_version}")
        with io.transaction(con):
            io.replace_table(con, "signals.setups", sig.reset_index(drop=True))
            io.record_inputs(con, "signals.setups", fp)
    return dg.MaterializeResult(
        metadata=rounded(_signals_report(sig, c, mode)),
        check_results=[count_result(STATUSES_VALID, invalid_signals(sig))],
    )
