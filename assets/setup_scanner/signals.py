"""Group ``setup_scanner``: tuned thresholds and the gated signals with their execution.

* ``signals/setup_thresholds`` — point-in-time tuned threshold versions (every ``tune_every_days``, per
  pair/timeframe, :func:`pipeline.core.setup_gating.tune_schedule`) on the scores of the meta-model in force.
* ``signals/setups`` — every valid candidate scored (p(win), EV), thresholds resolved (regime → tuned → configured
  → global), gated, and the passing signals executed by the shared simulator (one position per symbol × timeframe)
  with their status and outcome.

Scoring, gating and execution are the desk's shared wiring (:mod:`assets.setup_scanner.common`); without a champion
the gate is **rules only**: every valid candidate passes and ``why`` says so.
"""

import json

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
from pipeline.core.engine import EngineState, run
from pipeline.core.setup_gating import TUNED_COLUMNS, target_reach, tune_schedule, tune_threshold
from pipeline.core.setup_signals import (
    CLOSED_STATUSES,
    checkpoint_ts,
    execution_params,
    gate_scored,
    resume_signals,
    series_input,
)
from pipeline.core.setups import with_atr
from pipeline.core.validity import invalid_signals
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io, readers

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


STATE_TABLE = "signals.setup_exec_state"
#: signal columns the live resume rewrites (:func:`pipeline.core.setups.execution_status`)
STATUS_COLUMNS = [
    "status",
    "status_reason",
    "entry_ts",
    "exit_ts",
    "entry_price",
    "exit_price",
    "exit_reason",
    "pnl",
    "net_pct",
    "tp1_hit",
]


class SetupsConfig(dg.Config):
    """Run config of ``signals/setups``: ``incremental`` (the live job's) scores and gates only the candidates newer
    than each series' stored checkpoint and resumes the execution from the stored engine state."""

    incremental: bool = False


def _static_fingerprint(con, sc, champ: pd.Series | None, exchange: str) -> str:
    """What a stored execution state is valid for: the configuration, the champion, the meta-model's inputs and the
    tuned thresholds' content (the live job changes none of them)."""
    thr = (
        io.fetch_one(
            con.execute(
                "SELECT count(*), sum(hash(symbol, timeframe, valid_from, threshold))::VARCHAR "
                "FROM signals.setup_thresholds"
            )
        )
        if io.table_exists(con, "signals.setup_thresholds")
        else None
    )
    return io.inputs_fingerprint(
        con,
        readers.asset_fingerprints(["ml.setup_meta"]),
        extra=sc.model_dump_json()
        + CODE_VERSION
        + exchange
        + repr(thr)
        + ("" if champ is None else f"{champ.mlflow_run_id}|{pd.Timestamp(champ.data_end).value}"),
    )


def _series_bars(con, sc, exchange: str, sym: str, tf: str, start_ts: int | None) -> pd.DataFrame:
    b = with_atr(readers.bars(con, exchange, sym, tf, start_ts=start_ts), sc.signals.atr_period)
    return b.reset_index(drop=True)


def _checkpoint_state(
    con, sc, exchange: str, gated: pd.DataFrame, mode: str, start: int | None, cash_each: float, static: str
) -> pd.DataFrame:
    """The one-row execution state the next live run resumes from: the book of every series run up to its
    checkpoint (:func:`pipeline.core.setup_signals.checkpoint_ts`) from a fresh sleeves book, with the signatures of
    the bars and candidates up to it, and the gated series (their number sizes every sleeve)."""
    score = "p_win" if mode == "p_win" else "ev_pct"
    passed = gated[gated["passed"]]
    sleeves = sorted(f"{s}|{tf}" for s, tf in gated[["symbol", "timeframe"]].drop_duplicates().itertuples(index=False))
    overlap = settings().exchange.overlap_candles
    inputs, ck, before, bsig, csig = {}, {}, {}, {}, {}
    for (sym, tf), g in passed.groupby(["symbol", "timeframe"], sort=True):
        b = _series_bars(con, sc, exchange, sym, tf, start)
        if b.empty:
            continue
        name = f"{sym}|{tf}"
        ts = b["ts"].to_numpy(np.int64)
        k_ts = checkpoint_ts(ts, overlap, readers.oldest_open_candidate(con, exchange, sym, tf))
        k = 0 if k_ts is None else int(np.searchsorted(ts, k_ts, "right"))
        k_ts = int(ts[k - 1]) if k else int(ts[0]) - 1
        inputs[name] = series_input(b.iloc[:k], g[g["ts"] <= k_ts], score)[2]
        ck[name], before[name] = k_ts, k
        bsig[name] = readers.bars_signature(con, exchange, sym, tf, start, k_ts)
        csig[name] = readers.candidates_signature(con, exchange, sym, tf, k_ts)
    names = list(inputs)
    params = execution_params(sc.signals, sc.risk, sc.execution, sc.costs, cash_each)
    fresh = EngineState.new(names, cash_each, np.arange(len(names)))
    state = run(inputs, params, state=fresh, record_skipped=True, record_bars=False).state if names else fresh
    return pd.DataFrame(
        [
            {
                "fingerprint": static,
                "mode": mode,
                "start_ts": -1 if start is None else int(start),
                "cash_each": float(cash_each),
                "sleeves": json.dumps(sleeves),
                "checkpoints": json.dumps(ck),
                "bars_before": json.dumps(before),
                "bars_signature": json.dumps(bsig),
                "candidates_signature": json.dumps(csig),
                "state": json.dumps(state.to_dict()),
                "updated_at": io.now_utc(),
            }
        ]
    )


def _incremental(con, mlflow, sc, exchange: str, champ, static: str, overlap: int) -> dg.MaterializeResult | None:
    """The live run of ``signals/setups``: gate the candidates newer than each series' checkpoint and resume the
    execution from the stored state; None (the caller recomputes everything) when no valid state exists."""
    if (
        sc.signals.atr_period != 14
        or not io.table_exists(con, STATE_TABLE)
        or not io.table_exists(con, "signals.setups")
    ):
        return None
    got = io.read_df(con, f"SELECT * FROM {STATE_TABLE}")
    if len(got) != 1 or got["fingerprint"].iloc[0] != static:
        return None
    row = got.iloc[0]
    ck, before = json.loads(row["checkpoints"]), json.loads(row["bars_before"])
    bsig, csig = json.loads(row["bars_signature"]), json.loads(row["candidates_signature"])
    start = None if int(row["start_ts"]) < 0 else int(row["start_ts"])
    mode = row["mode"]
    state = EngineState.from_dict(json.loads(row["state"]))
    names = list(state.names)
    for name in names:
        sym, tf = name.split("|")
        if readers.bars_signature(con, exchange, sym, tf, start, ck[name]) != bsig[name]:
            return None
        if readers.candidates_signature(con, exchange, sym, tf, ck[name]) != csig[name]:
            return None
    lo = min(ck.values()) + 1 if ck else None
    c = readers.valid_candidates(con, start_ts=lo)
    key = c["symbol"] + "|" + c["timeframe"]
    c = c[c["ts"].to_numpy(np.int64) > key.map(ck).fillna(-(2**62)).to_numpy(np.int64)]
    scored = scored_candidates(con, mlflow, champ, sc, exchange, candidates=c)
    gated, gmode = gate_scored(
        scored, readers.tuned_thresholds(con) if champ is not None else None, sc.gating, champ is not None
    )
    gkey = gated["symbol"] + "|" + gated["timeframe"]
    if gmode != mode or not gkey.isin(json.loads(row["sleeves"])).all() or not gkey[gated["passed"]].isin(names).all():
        return None  # a new gated series changes every sleeve's cash; a new traded one has no state
    score = "p_win" if mode == "p_win" else "ev_pct"
    passed = gated[gated["passed"]]
    stored = readers.table(con, "signals.setups")
    skey = stored["symbol"] + "|" + stored["timeframe"]
    carried = stored[stored["ts"].to_numpy(np.int64) <= skey.map(ck).fillna(2**62).to_numpy(np.int64)]
    segments = {}
    for name in names:
        sym, tf = name.split("|")
        b = _series_bars(con, sc, exchange, sym, tf, ck[name] + 1)
        nxt = checkpoint_ts(b["ts"].to_numpy(np.int64), overlap, readers.oldest_open_candidate(con, exchange, sym, tf))
        segments[name] = (b, int(before[name]), nxt)
    params = execution_params(sc.signals, sc.risk, sc.execution, sc.costs, float(row["cash_each"]))
    st, moved, new_state = resume_signals(
        segments, passed, carried[["symbol", "timeframe", "ts"]], score, params, state
    )
    sig = executed_signals(gated, st, mode, None if champ is None else f"{sc.meta.name} v{champ.model_version}")
    upd = carried.loc[moved.index].copy()
    for col in STATUS_COLUMNS:
        upd[col] = moved[col].to_numpy()
    # the next checkpoints, their bar counts and signatures
    new_ck, new_before, new_bsig, new_csig = dict(ck), dict(before), dict(bsig), dict(csig)
    for name in names:
        b, n0, nxt = segments[name]
        if nxt is None or nxt <= ck[name]:
            continue
        sym, tf = name.split("|")
        new_ck[name] = int(nxt)
        new_before[name] = n0 + int(np.searchsorted(b["ts"].to_numpy(np.int64), nxt, "right"))
        new_bsig[name] = readers.bars_signature(con, exchange, sym, tf, start, int(nxt))
        new_csig[name] = readers.candidates_signature(con, exchange, sym, tf, int(nxt))
    state_row = row.to_frame().T.assign(
        checkpoints=json.dumps(new_ck),
        bars_before=json.dumps(new_before),
        bars_signature=json.dumps(new_bsig),
        candidates_signature=json.dumps(new_csig),
        state=json.dumps(new_state.to_dict()),
        updated_at=io.now_utc(),
    )
    cut = pd.DataFrame(
        {
            "symbol": [n.split("|")[0] for n in names],
            "timeframe": [n.split("|")[1] for n in names],
            "ck": [ck[n] for n in names],
        }
    )
    new_rows = pd.concat([upd, sig], ignore_index=True) if len(upd) else sig.reset_index(drop=True)
    con.register("_cut", cut)
    con.register("_moved", pd.DataFrame({"candidate_id": upd["candidate_id"].astype(str)}))
    try:
        with io.transaction(con):
            con.execute(
                "DELETE FROM signals.setups s USING _cut c WHERE s.symbol = c.symbol AND s.timeframe = c.timeframe "
                "AND s.ts > c.ck"
            )
            con.execute("DELETE FROM signals.setups WHERE candidate_id IN (SELECT candidate_id FROM _moved)")
            if len(new_rows):
                con.register("_new", new_rows)
                con.execute("INSERT INTO signals.setups BY NAME SELECT * FROM _new")
            io.replace_table(con, STATE_TABLE, state_row.infer_objects())
    finally:
        for n in ("_cut", "_moved", "_new"):
            try:
                con.unregister(n)
            except Exception:  # noqa: BLE001 - not registered
                pass
    total = io.read_df(con, "SELECT count(*) AS n FROM signals.setups")["n"].iloc[0]
    bad = invalid_signals(pd.concat([sig, upd], ignore_index=True)) if len(sig) or len(upd) else 0
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(total),
            "mode": "incremental",
            "gate_mode": mode,
            "candidates_gated": len(gated),
            "signals_new_or_moved": len(sig) + len(upd),
            "bars_resumed": int(sum(len(v[0]) for v in segments.values())),
        },
        check_results=[count_result(STATUSES_VALID, bad)],
    )


def _full_recompute(con, mlflow, sc, exchange: str, fp: str, static: str | None):
    """Score, gate and execute every candidate and write ``signals.setups`` (with ``static``: and the execution state
    the next live run resumes from): ``(signals, gated candidates, mode)``."""
    c, mode, champ = gated_candidates(con, mlflow, sc, exchange)
    start = int(c["ts"].min()) if champ is not None and len(c) else None
    n_sleeves = max(1, c.groupby(["symbol", "timeframe"]).ngroups)  # same capital base as backtest/setup_scanner
    score = "p_win" if mode == "p_win" else "ev_pct"
    st, _, _ = execute(con, sc, exchange, c[c["passed"]].copy(), score, sc.init_cash / n_sleeves, start)
    sig = executed_signals(c, st, mode, None if champ is None else f"{sc.meta.name} v{champ.model_version}")
    state = (
        None
        if static is None
        else _checkpoint_state(con, sc, exchange, c, mode, start, sc.init_cash / n_sleeves, static)
    )
    with io.transaction(con):
        io.replace_table(con, "signals.setups", sig.reset_index(drop=True))
        io.record_inputs(con, "signals.setups", fp)
        if state is not None:
            io.replace_table(con, STATE_TABLE, state)
    return sig, c, mode


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
    context: dg.AssetExecutionContext, config: SetupsConfig, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    cfg = settings()
    sc = cfg.setup_scanner
    with warehouse.connect() as con:
        champ_in_force = model_in_force(con, sc, mlflow)
        fp = chain_fingerprint(con, sc, champ_in_force)
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
        static = _static_fingerprint(con, sc, champ_in_force, cfg.exchange.id)
        if config.incremental:
            inc = _incremental(con, mlflow, sc, cfg.exchange.id, champ_in_force, static, cfg.exchange.overlap_candles)
            if inc is not None:
                io.record_inputs(con, "signals.setups", fp)
                return inc
        elif io.table_exists(con, STATE_TABLE):  # a full recompute outside the live job: the live resume starts over
            con.execute(f"DELETE FROM {STATE_TABLE}")
        sig, c, mode = _full_recompute(con, mlflow, sc, cfg.exchange.id, fp, static if config.incremental else None)
    return dg.MaterializeResult(
        metadata=rounded({**_signals_report(sig, c, mode), "mode": "full"}),
        check_results=[count_result(STATUSES_VALID, invalid_signals(sig))],
    )
