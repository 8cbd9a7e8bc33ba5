"""Options desk (seed 000): today's decision in the seed's sample layout (the block ``trader options score-latest``
prints, :func:`pipeline.core.options_explain.latest_block`), the fusion state and score over BTC's price, the trades
with their structures and strikes, and the backtest's results per state and per year (``backtest.runs``)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from pipeline.apps import common
from pipeline.core.options_explain import latest_block
from warehouse import readers, serving

st.title("Options desk")
cfg = common.config().options_desk
daily = common.read(serving.options_daily_frame)
if daily is None or daily.empty:
    common.no_data("options signals (signals.options_daily)", "Run `trader options build-features`.")
    st.stop()


def decision(cur, names: tuple):
    return readers.options_decision(cur, dict(names))


@st.fragment(run_every=common.live_every())
def today() -> None:
    st.subheader("Today's decision")
    m = cfg.models
    inputs = common.read(decision, tuple(sorted(m.names.items())))
    if inputs is None:
        common.no_data("an options decision")
        return
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    lines = latest_block(inputs, now, cfg.max_data_age_days, m.names, (m.call_threshold, m.put_threshold))
    r = inputs["row"]
    c = st.columns(4)
    c[0].metric("Day", inputs["last"])
    c[1].metric("State", str(r["state"]))
    c[2].metric("Score", "n/a" if pd.isna(r["score"]) else f"{int(r['score']):+d}")
    c[3].metric("Trades", f"{len(inputs['trades'])}")
    st.code("\n".join(lines), language=None)


today()

start, end = common.pick_dates(
    daily["date"].min(), daily["date"].max(), "options", common.last_days(daily["date"].max(), 3 * 365)
)
view = daily[(daily["date"] >= start) & (daily["date"] < end)]

st.subheader("State and score over BTC's price")
fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
fig.add_trace(
    go.Scatter(x=view["date"], y=view["spot_usd"], mode="lines", name="BTC (USD)", line={"color": "#888"}), row=1, col=1
)
for state, g in view[view["state"] != "no_trade"].groupby("state"):  # no_trade days: the price line alone
    fig.add_trace(
        go.Scatter(x=g["date"], y=g["spot_usd"], mode="markers", name=str(state), marker={"size": 5}), row=1, col=1
    )
fig.add_trace(
    go.Bar(x=view["date"], y=view["score"], name="score", marker_color="#0969da", showlegend=False), row=2, col=1
)
fig.update_yaxes(type="log", title_text="BTC (USD)", row=1, col=1)
fig.update_yaxes(title_text="score", row=2, col=1)
fig.update_layout(height=560, margin={"t": 20, "b": 10}, legend={"orientation": "h"})
st.plotly_chart(fig, key="options-states")
common.table(
    view[
        [
            "date",
            "state",
            "state_reason",
            "score",
            "conviction",
            "confidence",
            "trade_type",
            "size",
            "spot_usd",
            "p_long",
            "p_short",
        ]
    ].iloc[::-1],
    "options_daily",
    height=260,
)

st.subheader("Trades: structures and strikes")
trades = common.read(serving.options_trades_frame)
if trades is None or trades.empty:
    common.no_data("options trades (signals.options_trades)")
else:
    t = trades[(trades["date"] >= start) & (trades["date"] < end)]
    taken = st.checkbox("only trades taken (no cooldown-suppressed events)", value=True, key="options-taken")
    if taken:
        t = t[t["cooldown_status"] == "taken"]
    cols = [
        "date",
        "trade_type",
        "structure",
        "strike_long",
        "strike_short",
        "expiry",
        "dte",
        "size",
        "confidence",
        "spot_usd",
        "cooldown_status",
        "model_gate",
        "reason",
    ]
    common.table(t[[c for c in cols if c in t.columns]].iloc[::-1], "options_trades", height=300)

st.subheader("Backtest: results per state and per year")
run = common.run_of(common.read(serving.backtests_frame), "options_desk")
if run is None:
    common.no_data("the options desk's backtest (backtest.runs, desk options_desk)")
else:
    m = run["metrics"] or {}
    common.metric_cards(m, ("total_return", "annual_return", "sharpe", "max_drawdown", "n_trades", "win_rate"))
    bench = run["benchmark"] or {}
    core = common.metrics_table({"fusion": m, **{k: v for k, v in bench.items() if isinstance(v, dict)}})
    common.table(core, "options_core_metrics")
    eq = common.read(serving.equity_daily_frame, [run["run_id"]])
    if eq is not None and not eq.empty:
        f = go.Figure([go.Scatter(x=eq["day"], y=eq["equity"], name="fusion account", mode="lines")])
        f.add_trace(
            go.Scatter(
                x=eq["day"], y=eq["benchmark_equity"], name="buy-and-hold BTC", mode="lines", line={"dash": "dot"}
            )
        )
        f.update_layout(height=340, yaxis_type="log", margin={"t": 20, "b": 10}, legend={"orientation": "h"})
        st.plotly_chart(f, key="options-equity")
    per = run["per_symbol"] or {}
    left, right = st.columns(2)
    for col, key, x in ((left, "by_state", "state"), (right, "by_year", "year")):
        with col:
            df = pd.DataFrame(per.get(key) or [])
            st.markdown(f"**{key.replace('_', ' ')}**")
            if df.empty:
                common.no_data(f"results {key.replace('_', ' ')}")
                continue
            if "avg_option_ret" in df:
                st.plotly_chart(
                    px.bar(df, x=x, y="avg_option_ret", hover_data=list(df.columns), height=260), key=f"options-{key}"
                )
            common.table(df, f"options_{key}")
    if per.get("by_trade_type"):
        st.markdown("**by trade type**")
        common.table(pd.DataFrame(per["by_trade_type"]), "options_by_trade_type")
