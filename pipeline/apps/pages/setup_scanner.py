"""Setup scanner (seed 002 "Dashboard"): candles with signal markers and the selected signal's entry / SL / TP1 / TP2,
the latest gated signals with their status, gated versus ungated versus buy-and-hold equity with the stored core
metrics (``backtest.runs``, the one ``metrics()``), coverage versus win rate per p(win) threshold
(:func:`pipeline.core.setup_gating.tune_threshold`'s table) and the p(win) histogram with the reliability diagram
(:func:`models.calibration.reliability_table`) of the champion's point-in-time scores."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from models.calibration import reliability_table
from pipeline.apps import common
from pipeline.core.setup_gating import tune_threshold
from warehouse import serving

st.title("Setup scanner")
cfg = common.config().setup_scanner
series = common.read(serving.series_frame)
all_signals = common.read(serving.setups_frame)
newest = None if all_signals is None or all_signals.empty else all_signals.iloc[0]
pick = (
    None
    if series is None
    else common.pick_series(
        series, "setups", cfg.timeframes, None if newest is None else (newest["symbol"], newest["timeframe"])
    )
)
if pick is None:
    common.no_data("candles of the scanner's timeframes (market.ohlcv)", "Run `trader run`.")
    st.stop()
symbol, timeframe = pick
row = series[(series["symbol"] == symbol) & (series["timeframe"] == timeframe)].iloc[0]
first, last = common.ms(row["first_ts"]), common.ms(row["last_ts"])
default = common.last_days(last, 14)
if all_signals is not None:  # no signal of this series in its last 14 days: the days around its newest one instead
    own = all_signals[(all_signals["symbol"] == symbol) & (all_signals["timeframe"] == timeframe)]
    if not own.empty and own["open_time"].iloc[0] < default[0]:
        t = own["open_time"].iloc[0]
        default = (t - pd.Timedelta(days=5), t + pd.Timedelta(days=2))
start, end = common.pick_dates(first, last, "setups", default)
MAX_CANDLES = 5000


def signals_in_view(s: pd.DataFrame | None) -> pd.DataFrame:
    if s is None or s.empty:
        return pd.DataFrame()
    return s[
        (s["symbol"] == symbol) & (s["timeframe"] == timeframe) & (s["open_time"] >= start) & (s["open_time"] < end)
    ]


def candles_panel(sig: pd.DataFrame) -> None:
    st.subheader(f"{symbol} {timeframe} candles")
    c = common.read(serving.candles_frame, symbol, timeframe, common.to_ms(start), common.to_ms(end))
    if c is None or c.empty:
        common.no_data(f"candles of {symbol} {timeframe} in this date range")
        return
    if len(c) > MAX_CANDLES:
        st.caption(f"showing the last {MAX_CANDLES:,} of {len(c):,} candles: narrow the date range to see the rest")
        c = c.tail(MAX_CANDLES)
    fig = go.Figure(
        go.Candlestick(x=c["open_time"], open=c["open"], high=c["high"], low=c["low"], close=c["close"], name="candles")
    )
    chosen = None
    if not sig.empty:
        for side, name, symbol_, color in (
            (1, "long signal", "triangle-up", "#1a7f37"),
            (-1, "short signal", "triangle-down", "#cf222e"),
        ):
            s = sig[sig["side"] == side]
            fig.add_trace(
                go.Scatter(
                    x=s["open_time"],
                    y=s["entry"],
                    mode="markers",
                    marker={"symbol": symbol_, "size": 12, "color": color, "line": {"width": 1, "color": "black"}},
                    name=name,
                    text=s["status"],
                    hovertemplate="%{x}<br>entry %{y}<br>%{text}<extra></extra>",
                )
            )
        labels = [
            f"{t:%Y-%m-%d %H:%M} {'long' if sd > 0 else 'short'} {st_}"
            for t, sd, st_ in zip(sig["open_time"], sig["side"], sig["status"])
        ]
        i = st.selectbox(
            "Signal whose plan is drawn", range(len(sig)), format_func=lambda k: labels[k], key="setups-signal"
        )
        chosen = sig.iloc[i]
        for level, color, dash in (
            ("entry", "#0969da", "solid"),
            ("sl", "#cf222e", "dash"),
            ("tp1", "#1a7f37", "dash"),
            ("tp2", "#1a7f37", "dot"),
        ):
            fig.add_hline(
                y=float(chosen[level]),
                line={"color": color, "dash": dash, "width": 1},
                annotation_text=f"{level.upper()} {chosen[level]:,.6g}",
            )
    fig.update_layout(
        height=520, xaxis_rangeslider_visible=False, margin={"t": 30, "b": 10}, legend={"orientation": "h"}
    )
    st.plotly_chart(fig, key="setups-candles")
    if chosen is None:
        st.caption("no gated signal of this series in the date range")


def signals_panel(all_signals: pd.DataFrame | None, sig: pd.DataFrame) -> None:
    st.subheader("Latest signals")
    if all_signals is None or all_signals.empty:
        common.no_data("gated setup signals (signals.setups)")
        return
    scope = st.radio(
        "Signals of", ["this series and date range", "every pair (newest 200)"], horizontal=True, key="setups-scope"
    )
    show = sig if scope.startswith("this") else all_signals.head(200)
    cols = [
        "open_time",
        "symbol",
        "timeframe",
        "side",
        "level",
        "entry",
        "sl",
        "tp1",
        "tp2",
        "p_win",
        "ev_pct",
        "threshold",
        "threshold_source",
        "status",
        "status_reason",
        "net_pct",
        "why",
    ]
    counts = all_signals["status"].value_counts()
    st.caption("All gated signals by status: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    common.table(show[[c for c in cols if c in show.columns]], "setup_signals", key="setup-signals")


@st.fragment(run_every=common.live_every())
def live() -> None:
    all_signals = common.read(serving.setups_frame)
    sig = signals_in_view(all_signals)
    candles_panel(sig)
    signals_panel(all_signals, sig)


live()

st.subheader("Gated versus ungated versus buy-and-hold")
backtests = common.read(serving.backtests_frame)
gated, ungated = (
    common.run_of(backtests, "setup_scanner", "setup_gated"),
    common.run_of(backtests, "setup_scanner", "setup_ungated"),
)
if gated is None:
    common.no_data("the setup scanner's backtest (backtest.runs, desk setup_scanner)", "Run `trader run`.")
else:
    m = gated["metrics"] or {}
    common.metric_cards(m, ("total_return", "annual_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "dsr"))
    runs = [gated["run_id"]] + ([ungated["run_id"]] if ungated else [])
    eq = common.read(serving.equity_daily_frame, runs)
    if eq is not None and not eq.empty:
        fig = go.Figure()
        for rid, name in zip(runs, ("gated", "ungated")):
            e = eq[eq["run_id"] == rid]
            fig.add_trace(go.Scatter(x=e["day"], y=e["equity"], name=name, mode="lines"))
        g = eq[eq["run_id"] == gated["run_id"]]
        fig.add_trace(
            go.Scatter(
                x=g["day"],
                y=g["benchmark_equity"],
                name="buy-and-hold (equal weight)",
                mode="lines",
                line={"dash": "dot"},
            )
        )
        fig.update_layout(
            height=380,
            yaxis_type="log",
            yaxis_title="equity (quote currency, daily closes)",
            margin={"t": 30, "b": 10},
            legend={"orientation": "h"},
        )
        st.plotly_chart(fig, key="setups-equity")
    core = common.metrics_table(
        {"gated": m, "ungated": (ungated or {}).get("metrics"), "buy_and_hold": common.benchmark_of(gated["benchmark"])}
    )
    st.caption(
        f"Core metrics as stored by the backtest (run {gated['run_id']}, {gated['sample']}, {gated['period_start']:%Y-%m-%d} → {gated['period_end']:%Y-%m-%d})"
    )
    common.table(core, "setup_core_metrics")

st.subheader("Meta-model: coverage versus win rate, p(win) and reliability")
scores = common.read(serving.meta_scores_frame)
if scores is None or scores.empty:
    common.no_data(
        "scored, closed setup candidates (ml.setup_meta_scores)", "Train the meta-model: `trader setups train-meta`."
    )
else:
    only = st.checkbox(f"only {symbol} {timeframe}", value=False, key="setups-only-series")
    sc = scores[(scores["symbol"] == symbol) & (scores["timeframe"] == timeframe)] if only else scores
    if sc.empty:
        common.no_data(f"scored candidates of {symbol} {timeframe}")
    else:
        g = cfg.gating
        tuned = tune_threshold(
            sc["p_cal"].to_numpy(), sc["win"].to_numpy(), g.target_winrate_pct / 100, g.min_closed_samples
        )
        cov = tuned["table"]
        st.caption(
            f"model version {sc['model_version'].iloc[0]} · {len(sc):,} closed out-of-sample candidates · base win rate "
            f"{tuned['base_winrate'] * 100:.1f} % · target {g.target_winrate_pct:g} % with ≥ {g.min_closed_samples} signals: "
            + (
                f"reached at p(win) ≥ {tuned['threshold']:.3f}"
                if pd.notna(tuned["threshold"])
                else f"not reached (best {tuned['best_winrate'] * 100:.1f} %)"
            )
        )
        left, right = st.columns(2)
        with left:
            fig = make_subplots(specs=[[{"secondary_y": True}]])
            fig.add_trace(
                go.Scatter(x=cov["threshold"], y=cov["coverage"], name="coverage", mode="lines+markers"),
                secondary_y=False,
            )
            fig.add_trace(
                go.Scatter(x=cov["threshold"], y=cov["winrate"], name="win rate", mode="lines+markers"),
                secondary_y=True,
            )
            fig.add_hline(
                y=g.target_winrate_pct / 100,
                line={"dash": "dot", "color": "grey"},
                secondary_y=True,
                annotation_text="target",
            )
            fig.update_layout(
                height=360,
                title="Coverage versus win rate per p(win) threshold",
                xaxis_title="p(win) threshold",
                margin={"t": 40, "b": 10},
                legend={"orientation": "h"},
            )
            fig.update_yaxes(title_text="coverage", tickformat=".0%", secondary_y=False)
            fig.update_yaxes(title_text="win rate", tickformat=".0%", secondary_y=True)
            st.plotly_chart(fig, key="setups-coverage")
            common.table(cov, "coverage_vs_winrate", height=240)
        with right:
            rel = reliability_table(sc["p_cal"].to_numpy(), sc["win"].to_numpy(), 10)
            fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.4, 0.6], vertical_spacing=0.06)
            fig.add_trace(go.Histogram(x=sc["p_cal"], nbinsx=50, name="p(win)"), row=1, col=1)
            r = rel[rel["count"] > 0]
            fig.add_trace(
                go.Scatter(
                    x=r["p_mean"], y=r["y_rate"], mode="lines+markers", name="observed win rate", text=r["count"]
                ),
                row=2,
                col=1,
            )
            fig.add_trace(
                go.Scatter(
                    x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dot", "color": "grey"}
                ),
                row=2,
                col=1,
            )
            fig.update_layout(
                height=360,
                title="p(win) histogram and reliability diagram",
                margin={"t": 40, "b": 10},
                legend={"orientation": "h"},
            )
            fig.update_xaxes(title_text="calibrated p(win)", row=2, col=1)
            st.plotly_chart(fig, key="setups-reliability")
            common.table(rel, "reliability", height=240)
