"""Group ``options_desk``: model-based evaluation of the taken option trades (``backtest/options_desk``).

Pure evaluation in :func:`pipeline.core.options_eval.desk_evaluation`; rows in ``backtest.*`` with desk
``options_desk`` (``warehouse.runs.write_backtest``).
"""

import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import POOL, if_unchanged, md_table, rounded
from assets.keys import GROUP_OPTIONS, OPTIONS_BACKTEST, OPTIONS_TRADES
from pipeline.config import settings
from pipeline.core.backtest import equity_plot
from pipeline.core.metrics import METRICS_VERSION
from pipeline.core.options_eval import desk_evaluation, trade_rows
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io, readers, runs

CODE_VERSION = "5"  # 5: the account marked daily (issue 15), metrics on daily closes
RUN_ID = "options_desk-fusion_options"
SAMPLE = (
    "full history; rules fixed a priori (no fitted parameters); option prices model-based (Black-Scholes, "
    "IV = 30d realized vol x 1.10)"
)


def run_row(e: dict, decisions, context, mlflow_run_id: str | None = None) -> dict:
    """The ``backtest.runs`` row of the desk's evaluation (metrics and benchmarks JSON-safe)."""
    per = {k: e[k].round(4).to_dict(orient="records") for k in ("by_state", "by_year", "by_trade_type")}
    return runs.backtest_run_row(
        run_id=RUN_ID,
        desk="options_desk",
        strategy="fusion_options",
        sample=SAMPLE,
        period_start=e["start"],
        period_end=e["end"],
        timeframe="1d",
        universe=["BTC"],
        params=decisions.model_dump_json(),
        costs={"fees": 0, "note": "model premium, no spread"},
        metrics=runs.clean_metrics(e["metrics"]),
        benchmark={k: runs.clean_metrics(v) for k, v in e["benchmark"].items()},
        per_symbol=json.dumps(per, default=str),
        model_name=None,
        model_run_id=None,
        mlflow_run_id=mlflow_run_id,
        code_version=CODE_VERSION,
        dagster_run_id=context.run_id,
    )


@dg.asset(
    key=OPTIONS_BACKTEST,
    group_name=GROUP_OPTIONS,
    pool=POOL,
    deps=[OPTIONS_TRADES],
    kinds={"duckdb", "mlflow"},
    code_version=CODE_VERSION,
    description="Model-based evaluation of every taken trade decision over the whole history: Black-Scholes premium "
    "with a realized-volatility IV proxy, payoff at expiry, underlying move over the DTE; per state and per "
    "year, versus buy-and-hold BTC and always-on calls/puts. Rows in backtest.* with desk 'options_desk'; one MLflow "
    "run (experiment backtests) with the benchmarks as bh_* / always_on_*_* and the equity plot.",
)
def backtest_options_desk(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    decisions = settings().options_desk.decisions
    with warehouse.connect() as con:
        inputs = readers.asset_fingerprints(["signals.options", "market.onchain_daily"])
        fp = io.inputs_fingerprint(con, inputs, extra=CODE_VERSION + METRICS_VERSION)
        if skip := if_unchanged(context, con, "backtest.options_desk", fp, SKIPPED, metadata={"run_id": RUN_ID}):
            return skip
        price = readers.btc_price(con)
        e = desk_evaluation(readers.taken_option_trades(con), price, decisions.structures)
        eq = e["equity"].assign(drawdown=e["equity"]["equity"] / e["equity"]["equity"].cummax() - 1)  # daily marks
        logged = _log(mlflow, e, eq, price, context)
        runs.write_backtest(
            con,
            run_row(e, decisions, context, logged.run_id),
            trade_rows(e["ev"]),
            eq,
            inputs=("backtest.options_desk", fp),
        )
    return dg.MaterializeResult(
        metadata=rounded(
            {
                "run_id": RUN_ID,
                "note": "option prices are MODEL-BASED (Black-Scholes, realized-vol IV proxy), not market quotes",
                "versus_benchmarks": md_table(_compare(e["metrics"], e["benchmark"])),
                "by_trade_state": md_table(e["by_state"]),
                "by_year": md_table(e["by_year"]),
                "by_trade_type": md_table(e["by_trade_type"]),
                "mlflow_run": dg.MetadataValue.url(logged.url),
            }
        )
    )


SKIPPED = "trades and prices unchanged; not re-evaluated"


def _log(mlflow: MlflowTracking, e: dict, eq: pd.DataFrame, price: pd.Series, context):
    """The evaluation as one MLflow run in ``backtests``: its metrics and benchmarks as produced, the account curve
    against BTC held over the same span (both start at 1)."""
    t = eq["ts"].to_numpy()
    p = price.dropna()
    p_ts = p.index.astype("datetime64[ms]").astype("int64").to_numpy()
    hold = np.interp(t, p_ts, p.to_numpy()) / np.interp(t[0], p_ts, p.to_numpy()) if len(t) else t
    png = equity_plot(t, eq["equity"].to_numpy(), hold, "options desk: fusion trades (model premium) vs holding BTC")
    return mlflow.log_backtest(
        RUN_ID,
        {
            "desk": "options_desk",
            "dagster_run_id": context.run_id,
            "dagster_asset_key": OPTIONS_BACKTEST.to_user_string(),
            "code_version": CODE_VERSION,
            "sample": SAMPLE,
            "data_start": str(pd.Timestamp(e["start"]).date()),
            "data_end": str(pd.Timestamp(e["end"]).date()),
        },
        {"strategy": "fusion_options", "timeframe": "1d", "pricing": "Black-Scholes, IV = 30d realized vol x 1.10"},
        runs.clean_metrics(e["metrics"]),
        {k: runs.clean_metrics(v) for k, v in e["benchmark"].items()},
        {"equity_drawdown.png": png},
    )


def _compare(m: dict, bench: dict) -> pd.DataFrame:
    """The fusion trades next to each benchmark: trades, option hit rate, return, risk, PSR / DSR (daily closes)."""
    keys = ("option_hit_rate", "total_return", "annual_return", "sharpe", "sortino", "max_drawdown", "psr", "dsr")
    rows = [{"": "fusion trades", "n_trades": m.get("n_trades"), **{k: m.get(k) for k in keys}}]
    return pd.DataFrame(rows + [{"": name, **{k: v.get(k) for k in keys}} for name, v in bench.items()])
