"""Overview: every desk's latest signals, the paper books (engine state, equity, open positions), the newest backtest
of each desk and the health of the inputs (the REST API's health: ages of candles / on-chain / sentiment / signals,
inputs failing validation) and of the pipeline (the newest run of each job and every check's newest result, as of the
last publish: ``ops.run_status`` / ``ops.check_status``). Refreshed every ``dashboard.refresh_s`` seconds."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import plotly.express as px
import streamlit as st

from pipeline.api import compute_health
from pipeline.apps import common
from warehouse import serving
from warehouse.serving import SnapshotUnavailable

st.title("Overview")


def health_panel() -> None:
    st.subheader("Health")
    try:
        h = compute_health(common.snapshot(), common.config(), dt.datetime.now(dt.UTC))
    except SnapshotUnavailable:
        common.no_data("health (the snapshot has no options signals table)", "Run `trader run`.")
        return
    ok = h.status == "ok"
    (st.success if ok else st.warning)(
        f"Status **{h.status}**" + ("" if ok else ": " + "; ".join(h.reasons)),
        icon=":material/check_circle:" if ok else ":material/warning:",
    )
    ages = {a.input: a for a in h.inputs}
    cols = st.columns(5)
    for c, name in zip(cols, ("candles", "onchain", "sentiment", "signals", "setups")):
        a = ages.get(name)
        hours = None if a is None else (a.stalest_age_hours if a.stalest_age_hours is not None else a.age_hours)
        c.metric(
            f"{name} age" + (" (stalest)" if name == "candles" else ""),
            common.age_text(hours),
            delta="stale" if a is not None and a.stale else None,
            delta_color="inverse",
        )
    df = pd.DataFrame([a.model_dump() for a in h.inputs])
    common.table(df, "health_inputs")
    st.caption(f"Inputs failing validation now (ops.input_errors): **{h.input_errors}**")
    if h.failed_inputs:
        common.table(pd.DataFrame([e.model_dump() for e in h.failed_inputs]), "failed_inputs")
    runs, checks = common.read(serving.run_status_frame), common.read(serving.check_status_frame)
    if runs is None or checks is None:
        common.no_data("runs and checks (published from this release on)", "Run `trader run`.")
        return
    left, right = st.columns(2)
    with left:
        last = runs.iloc[0] if len(runs) else None
        st.metric("last run", "none" if last is None else f"{last['job_name']}: {last['status']}")
        st.caption("The newest run of each job, as of the last publish.")
        common.table(runs, "run_status")
    with right:
        failed = checks[~checks["passed"].astype(bool)]
        st.metric(
            "failed checks",
            f"{len(failed)} of {len(checks)}",
            delta="failing" if len(failed) else None,
            delta_color="inverse",
        )
        st.caption("The newest result of each asset check, failed first, as of the last publish.")
        common.table(checks, "check_status")


def signals_panel() -> None:
    st.subheader("Latest signals")
    setups_col, options_col, base_col = st.columns(3)
    with setups_col:
        st.markdown("**Setup scanner** — newest gated signal per symbol × timeframe")
        s = common.read(serving.setups_frame)
        if s is None or s.empty:
            common.no_data("setup signals (signals.setups)")
        else:
            latest = s.groupby(["symbol", "timeframe"], sort=True).head(1)
            cols = ["open_time", "symbol", "timeframe", "side", "entry", "sl", "tp1", "p_win", "ev_pct", "status"]
            common.table(latest[cols], "latest_setups")
    with options_col:
        st.markdown("**Options desk** — latest decision")
        d = common.read(serving.options_daily_frame)
        if d is None or d.empty:
            common.no_data("options signals (signals.options_daily)")
        else:
            r = d.iloc[-1]
            trade = r["trade_type"] if pd.notna(r["trade_type"]) else "no trade"
            st.metric(f"{pd.Timestamp(r['date']).date()}", str(r["state"]), delta=str(trade), delta_color="off")
            t = common.read(serving.options_trades_frame)
            day = t[t["date"] == r["date"]] if t is not None else pd.DataFrame()
            if not day.empty:
                common.table(
                    day[["trade_type", "structure", "strike_long", "strike_short", "expiry", "size"]], "options_today"
                )
    with base_col:
        st.markdown("**Research baseline** — newest out-of-sample p(win) per pair")
        p = common.read(serving.latest_predictions_frame)
        if p is None or p.empty:
            common.no_data("baseline predictions (ml.predictions)")
        else:
            thr = common.config().research.backtest.enter_threshold
            p = p.assign(long=p["p_cal"] >= thr)
            common.table(p[["symbol", "timeframe", "open_time", "p_cal", "long"]], "baseline_latest")
            st.caption(f"long when calibrated p ≥ enter_threshold {thr:g}")


def paper_panel() -> None:
    st.subheader("Paper trading")
    p = common.read(serving.paper_frames)
    if p is None or p["state"].empty:
        common.no_data(
            "paper books (paper.*)", "`trader live` steps the setup scanner's paper book on each closed candle."
        )
        return
    state, eq = p["state"], p["equity"]
    for desk in state["desk"]:
        e = eq[eq["desk"] == desk]
        st.markdown(f"**{desk}**")
        c = st.columns(5)
        last = e.iloc[-1] if not e.empty else None
        srow = state[state["desk"] == desk].iloc[0]
        c[0].metric("Equity", common.num(None if last is None else last["equity"]))
        c[1].metric("Engine state", "n/a" if last is None else str(last["engine_state"]))
        c[2].metric("Open positions", "0" if last is None else f"{int(last['n_positions'])}")
        c[3].metric("Gross exposure", common.num(None if last is None else last["gross_exposure"]))
        c[4].metric("Last bar", f"{common.ms(srow['last_ts']):%Y-%m-%d %H:%M}" if pd.notna(srow["last_ts"]) else "n/a")
        if len(e) > 1:
            st.plotly_chart(px.line(e, x="open_time", y="equity", height=260), key=f"paper-eq-{desk}")
    st.markdown("**Open positions**")
    if p["positions"].empty:
        st.caption("none")
    else:
        common.table(p["positions"], "paper_positions")
    st.markdown("**Recent paper trades**")
    common.table(p["trades"].head(50), "paper_trades")


def backtests_panel() -> None:
    st.subheader("Newest backtest of each desk")
    b = common.read(serving.backtests_frame)
    if b is None or b.empty:
        common.no_data("backtests (backtest.runs)")
        return
    rows = []
    for _, r in b.iterrows():
        m = common.parse_json(r["metrics"]) or {}
        rows.append(
            {
                "desk": r["desk"],
                "strategy": r["strategy"],
                "created_at": r["created_at"],
                **{label: m.get(k) for k, label, _ in common.CORE_METRICS},
            }
        )
    common.table(pd.DataFrame(rows), "backtests_latest")


@st.fragment(run_every=common.live_every())
def live() -> None:
    health_panel()
    signals_panel()
    paper_panel()
    backtests_panel()


live()
