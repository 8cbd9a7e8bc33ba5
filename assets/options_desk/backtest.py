"""Group ``options_desk``: model-based evaluation of the taken option trades (``backtest/options_desk``).

Pure evaluation in :func:`pipeline.core.options_eval.desk_evaluation`; rows in ``backtest.*`` with desk
``options_desk`` (``warehouse.runs.write_backtest``).
"""

import json

import dagster as dg
import pandas as pd

from assets.common import POOL, if_unchanged, md_table, rounded
from assets.keys import GROUP_OPTIONS, OPTIONS_BACKTEST, OPTIONS_TRADES
from pipeline.config import settings
from pipeline.core.options_eval import desk_evaluation, trade_rows
from resources.warehouse import WarehouseResource
from warehouse import io, readers, runs

CODE_VERSION = "4"
RUN_ID = "options_desk-fusion_options"
SAMPLE = (
    "full history; rules fixed a priori (no fitted parameters); option prices model-based (Black-Scholes, "
    "IV = 30d realized vol x 1.10)"
)


def run_row(e: dict, decisions, context) -> dict:
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
        mlflow_run_id=None,
        code_version=CODE_VERSION,
        dagster_run_id=context.run_id,
    )


@dg.asset(
    key=OPTIONS_BACKTEST,
    group_name=GROUP_OPTIONS,
    pool=POOL,
    deps=[OPTIONS_TRADES],
    kinds={"duckdb"},
    code_version=CODE_VERSION,
    description="Model-based evaluation of every taken trade decision over the whole history: Black-Scholes premium "
    "with a realized-volatility IV proxy, payoff at expiry, underlying move over the DTE; per state and per "
    "year, versus buy-and-hold BTC and always-on calls/puts. Rows in backtest.* with desk 'options_desk'.",
)
def backtest_options_desk(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    decisions = settings().options_desk.decisions
    with warehouse.connect() as con:
        inputs = readers.asset_fingerprints(["signals.options", "market.onchain_daily"])
        fp = io.inputs_fingerprint(con, inputs, extra=CODE_VERSION)
        if skip := if_unchanged(context, con, "backtest.options_desk", fp, SKIPPED, metadata={"run_id": RUN_ID}):
            return skip
        e = desk_evaluation(readers.taken_option_trades(con), readers.btc_price(con), decisions.structures)
        eq = e["equity"].assign(drawdown=e["equity"]["equity"] / e["equity"]["equity"].cummax() - 1)
        runs.write_backtest(
            con, run_row(e, decisions, context), trade_rows(e["ev"]), eq, inputs=("backtest.options_desk", fp)
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
            }
        )
    )


SKIPPED = "trades and prices unchanged; not re-evaluated"


def _compare(m: dict, bench: dict) -> pd.DataFrame:
    """The fusion trades next to each benchmark: trades, option hit rate, total return, max drawdown."""
    keys = ("option_hit_rate", "total_return", "max_drawdown")
    rows = [{"": "fusion trades", "n_trades": m.get("n_trades"), **{k: m.get(k) for k in keys}}]
    return pd.DataFrame(rows + [{"": name, **{k: v.get(k) for k in keys}} for name, v in bench.items()])
