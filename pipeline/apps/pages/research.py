"""Research baseline: every model's versions and which one is ``@champion`` (the REST API's model status,
:func:`pipeline.api.model_statuses`), out-of-sample scores per walk-forward fold (``ml.folds``), and the baseline's
backtest versus buy-and-hold with the stored core metrics (``backtest.runs``)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pipeline.api import model_statuses
from pipeline.apps import common
from warehouse import serving

st.title("Research baseline")

st.subheader("Models and their champion")
runs = common.read(serving.model_runs_frame)
if runs is None or runs.empty:
    common.no_data("model trainings (ml.model_runs)", "Run `trader train`.")
    model = None
else:
    statuses = {s.model_name: s for s in model_statuses(runs.to_dict("records"))}
    cols = st.columns(min(len(statuses), 4))
    for i, (name, s) in enumerate(statuses.items()):
        cols[i % len(cols)].metric(
            f"{name} @champion",
            f"v{s.champion.model_version}" if s.champion else "none",
            delta=f"latest v{s.latest.model_version}" + ("" if s.status == "latest_is_champion" else f" ({s.status})"),
            delta_color="off",
        )
    names = list(statuses)
    model = st.sidebar.selectbox(
        "Model", names, index=names.index("baseline_direction") if "baseline_direction" in names else 0
    )
    champions = {s.champion.mlflow_run_id for s in statuses.values() if s.champion}

    def oos(r, part, k):
        m = common.parse_json(r["metrics"]) or {}
        return (m.get(part) or {}).get(k)

    show = runs.assign(
        champion=runs["mlflow_run_id"].isin(champions),
        **{
            f"oos_{k}_cal": [oos(r, "cal", k) for _, r in runs.iterrows()]
            for k in ("auc", "brier", "brier_base", "ece")
        },
    )
    common.table(
        show[
            [
                "model_name",
                "model_version",
                "champion",
                "trained_at",
                "data_start",
                "data_end",
                "n_rows",
                "n_folds",
                "oos_auc_cal",
                "oos_brier_cal",
                "oos_brier_base_cal",
                "oos_ece_cal",
                "promotion_passed",
                "promoted",
                "promotion_reasons",
            ]
        ],
        "model_versions",
    )

st.subheader("Out-of-sample scores per fold")
folds = common.read(serving.folds_frame)
f = None if folds is None or model is None else folds[folds["model_name"] == model]
if f is None or f.empty:
    common.no_data(f"walk-forward folds of {model or 'a model'} (ml.folds)")
else:
    run_ids = runs[runs["model_name"] == model].sort_values("trained_at", ascending=False)["mlflow_run_id"].tolist()
    run_ids = [r for r in run_ids if r in set(f["mlflow_run_id"])] or list(f["mlflow_run_id"].unique())
    labels = {
        r: f"v{runs.loc[runs['mlflow_run_id'] == r, 'model_version'].iloc[0]} ({r[:8]})"
        if (runs["mlflow_run_id"] == r).any()
        else r
        for r in run_ids
    }
    rid = st.selectbox("Training", run_ids, format_func=labels.get, key="research-run")
    ff = f[f["mlflow_run_id"] == rid]
    fig = go.Figure()
    for k, name in (("auc_cal", "AUC"), ("brier_cal", "Brier"), ("base_rate_cal", "base rate"), ("ece_cal", "ECE")):
        if k in ff:
            fig.add_trace(go.Scatter(x=ff["fold"], y=ff[k], mode="lines+markers", name=name))
    fig.add_hline(y=0.5, line={"dash": "dot", "color": "grey"}, annotation_text="AUC 0.5")
    fig.update_layout(
        height=340,
        xaxis_title="fold",
        yaxis_title="calibrated, out of sample",
        margin={"t": 20, "b": 10},
        legend={"orientation": "h"},
    )
    st.plotly_chart(fig, key="research-folds")
    common.table(ff, "folds")

st.subheader("Backtest versus buy-and-hold")
run = common.run_of(common.read(serving.backtests_frame), "research")
if run is None:
    common.no_data(
        "the baseline's backtest (backtest.runs, desk research)", "Run `trader backtest --strategy baseline`."
    )
else:
    m = run["metrics"] or {}
    common.metric_cards(m, ("total_return", "annual_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "psr"))
    eq = common.read(serving.equity_daily_frame, [run["run_id"]])
    if eq is not None and not eq.empty:
        fig = go.Figure([go.Scatter(x=eq["day"], y=eq["equity"], name=run["strategy"], mode="lines")])
        fig.add_trace(
            go.Scatter(
                x=eq["day"],
                y=eq["benchmark_equity"],
                name="buy-and-hold (equal weight)",
                mode="lines",
                line={"dash": "dot"},
            )
        )
        fig.update_layout(height=360, yaxis_type="log", margin={"t": 20, "b": 10}, legend={"orientation": "h"})
        st.plotly_chart(fig, key="research-equity")
    st.caption(
        f"run {run['run_id']} · {run['sample']} · {pd.Timestamp(run['period_start']):%Y-%m-%d} → {pd.Timestamp(run['period_end']):%Y-%m-%d} · metrics as stored"
    )
    common.table(
        common.metrics_table({run["strategy"]: m, "buy_and_hold": common.benchmark_of(run["benchmark"])}),
        "research_core_metrics",
    )
    trades = common.read(serving.trades_frame, run["run_id"])
    if trades is not None and not trades.empty:
        st.markdown(f"**Trades** ({len(trades):,}, newest 500 shown; the CSV has them all)")
        st.dataframe(trades.tail(500).iloc[::-1], hide_index=True, height=260)
        st.download_button(
            "Download CSV",
            trades.to_csv(index=False).encode(),
            "research_trades.csv",
            "text/csv",
            key="csv-research-trades",
            on_click="ignore",
            icon=":material/download:",
        )
