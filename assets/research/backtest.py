"""Group ``research``: the baseline long/flat strategy on out-of-sample probabilities, all universe symbols.

Writes one ``backtest.runs`` row (params, period, universe, costs, metrics, buy-and-hold benchmark, code
version), its ``backtest.trades`` and ``backtest.equity``; logs the same to MLflow (experiment
``backtests``) with the equity/drawdown plot. Launchpad config overrides costs and the entry threshold
(``trader backtest --fee-bps ... --slippage-bps ... --latency ...``).
"""

import hashlib
import json
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from assets.common import POOL, md_table, png_array, png_md
from assets.keys import ACCOUNTING_RECONCILES, BASELINE, BASELINE_BACKTEST, GROUP_RESEARCH
from pipeline import research
from pipeline.config import settings
from pipeline.core.backtest import equity_plot
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io

CODE_VERSION = "1"
SUMMARY_KEYS = ["total_return", "annual_return", "volatility", "sharpe", "sortino", "max_drawdown", "max_drawdown_days",
                "calmar", "n_trades", "win_rate", "profit_factor", "expectancy", "expectancy_ret", "avg_r", "exposure", "turnover"]


class BacktestRunConfig(dg.Config):
    """Overrides of ``research.backtest`` for one run (unset = configuration value)."""

    fee_bps: Optional[float] = Field(None, description="Taker and maker fee, bps of notional.")
    slippage_bps: Optional[float] = Field(None, description="Slippage on market/stop fills, bps.")
    latency_bars: Optional[int] = Field(None, description="Extra bars between decision and execution.")
    enter_threshold: Optional[float] = Field(None, description="Go long when calibrated p >= this.")
    force: bool = Field(False, description="Re-run even if predictions and parameters are unchanged.")


def _compare(m: dict, bench: dict) -> pd.DataFrame:
    """Strategy next to buy-and-hold, one row per summary metric (rounded for display)."""
    r4 = lambda v: round(v, 4) if isinstance(v, float) else v  # noqa: E731
    return pd.DataFrame([{"metric": k, "strategy": r4(m.get(k)), "buy_and_hold": r4(bench.get(k))} for k in SUMMARY_KEYS])


def _settings(config: BacktestRunConfig):
    cfg = settings()
    bt = cfg.research.backtest
    costs = bt.costs.model_copy(update={k: v for k, v in {
        "fee_taker_bps": config.fee_bps, "fee_maker_bps": config.fee_bps, "slippage_bps": config.slippage_bps,
        "latency_bars": config.latency_bars}.items() if v is not None})
    if config.enter_threshold is not None:
        bt = bt.model_copy(update={"enter_threshold": config.enter_threshold})
    return cfg, bt, costs


@dg.asset(
    key=BASELINE_BACKTEST, group_name=GROUP_RESEARCH, pool=POOL, deps=[BASELINE], kinds={"numba", "duckdb", "mlflow"},
    code_version=CODE_VERSION,
    check_specs=[dg.AssetCheckSpec(ACCOUNTING_RECONCILES, asset=BASELINE_BACKTEST, blocking=True,
                                   description="Final equity = initial cash + sum of trade PnL (closed and marked-open), "
                                               "and no trade exits before it enters.")],
    description="Long/flat on the baseline model's calibrated out-of-sample p(TP first) over every universe symbol "
                "(1h), ATR stop/target and time stop through the shared simulator, with fees, slippage and latency; "
                "versus equal-weight buy-and-hold over the same period.",
)
def backtest_baseline(context: dg.AssetExecutionContext, config: BacktestRunConfig, warehouse: WarehouseResource,
                      mlflow: MlflowTracking) -> dg.MaterializeResult:
    cfg, bt, costs = _settings(config)
    b, ex = cfg.research.baseline, cfg.exchange.id
    symbols = bt.symbols or cfg.universe.symbols
    with warehouse.connect() as con:
        model_run = io.fetch_one(con.execute("SELECT any_value(mlflow_run_id), count(*) FROM ml.predictions WHERE model_name = ?", [b.name]))
        if not model_run or not model_run[1]:
            raise dg.Failure(f"ml.predictions has no rows for {b.name}; materialise ml/baseline_direction first")
        params_blob = json.dumps({"bt": bt.model_dump(), "costs": costs.model_dump(), "symbols": symbols, "model_run": model_run[0],
                                  "code": CODE_VERSION}, sort_keys=True, default=str)
        run_id = f"{bt.strategy}-{hashlib.sha256(params_blob.encode()).hexdigest()[:12]}"
        fp = io.inputs_fingerprint(con, "SELECT count(*) FROM backtest.runs WHERE run_id = '" + run_id + "'", params_blob)
        if not config.force and io.inputs_unchanged(con, f"backtest.{bt.strategy}", fp):
            row = io.read_df(con, "SELECT metrics, benchmark, period_start, period_end, costs FROM backtest.runs WHERE run_id = ?", [run_id])
            if len(row):
                m, bench = json.loads(row["metrics"][0]), json.loads(row["benchmark"][0])
                return dg.MaterializeResult(metadata={"status": "predictions and parameters unchanged; not re-run (figures of the stored run)",
                                                      "run_id": run_id, "period": f"{row['period_start'][0]} .. {row['period_end'][0]}",
                                                      "costs": row["costs"][0], "metrics_vs_buy_and_hold": md_table(_compare(m, bench))},
                                            check_results=[dg.AssetCheckResult(check_name=ACCOUNTING_RECONCILES, passed=True,
                                                                               metadata={"note": "unchanged run"})])
        preds = io.read_df(con, "SELECT symbol, ts, p_cal FROM ml.predictions WHERE model_name = ? AND timeframe = ?", [b.name, b.timeframe])
        out = research.backtest_baseline(con, ex, preds, bt, b, costs, symbols)
    m, bench = research.clean_metrics(out.metrics), research.clean_metrics(out.benchmark)
    eq = out.equity
    # invariant: equity change == sum of trade PnL (open trades marked at their last close)
    pnl_total = float(out.trades["pnl"].sum()) if len(out.trades) else 0.0
    recon_err = abs(float(eq["equity"].iloc[-1]) - bt.init_cash - pnl_total)
    bad_order = int((out.trades["exit_ts"] < out.trades["entry_ts"]).sum()) if len(out.trades) else 0
    png = equity_plot(eq["ts"].to_numpy(), eq["equity"].to_numpy(), eq["benchmark_equity"].to_numpy(),
                      f"{bt.strategy}: out-of-sample, {len(symbols)} symbols, fee {costs.fee_taker_bps} bps")
    period = (pd.Timestamp(out.period[0], unit="ms"), pd.Timestamp(out.period[1], unit="ms"))
    with mlflow.start_run("backtests", run_id, {"dagster_run_id": context.run_id, "dagster_asset_key": BASELINE_BACKTEST.to_user_string(),
                                               "code_version": CODE_VERSION, "model_run_id": str(model_run[0]),
                                               "sample": "out_of_sample", "data_start": period[0].isoformat(),
                                               "data_end": period[1].isoformat()}) as mrun:
        import mlflow as mlf
        mlf.log_params({"strategy": bt.strategy, "enter_threshold": bt.enter_threshold, "symbols": ",".join(symbols),
                        **costs.model_dump(), **{f"sim_{k}": v for k, v in out.params.to_dict().items() if v is not None}})
        mlf.log_metrics({k: float(v) for k, v in m.items() if isinstance(v, float)})
        mlf.log_metrics({f"bh_{k}": float(v) for k, v in bench.items() if isinstance(v, float)})
        mlf.log_image(png_array(png), "equity_drawdown.png")
        mlflow_run_id, exp_id = mrun.info.run_id, mrun.info.experiment_id
    trades = out.trades.copy()
    trades["trade_id"] = np.arange(len(trades), dtype=np.int64)
    trades["entry_time"] = pd.to_datetime(trades["entry_ts"], unit="ms")
    trades["exit_time"] = pd.to_datetime(trades["exit_ts"], unit="ms")
    keep = ["trade_id", "symbol", "direction", "signal_ts", "entry_ts", "exit_ts", "entry_time", "exit_time", "entry_price",
            "exit_price", "units", "notional", "fees", "pnl", "ret", "exit_reason", "mae", "mfe", "r_multiple", "tp1_hit",
            "sl_initial", "tp_initial", "bars_held"]
    run_row = {"run_id": run_id, "desk": "research", "strategy": bt.strategy, "sample": "out_of_sample",
               "period_start": period[0], "period_end": period[1], "timeframe": b.timeframe, "universe": json.dumps(symbols),
               "params": json.dumps({"enter_threshold": bt.enter_threshold, **out.params.to_dict()}),
               "costs": json.dumps(costs.model_dump()), "metrics": json.dumps(m), "benchmark": json.dumps(bench),
               "per_symbol": out.per_symbol.to_json(orient="records"), "model_name": b.name, "model_run_id": model_run[0],
               "mlflow_run_id": mlflow_run_id, "code_version": CODE_VERSION, "dagster_run_id": context.run_id,
               "created_at": io.now_utc()}
    with warehouse.connect() as con, io.transaction(con):
        for t in ("backtest.trades", "backtest.equity", "backtest.runs"):
            con.execute(f"DELETE FROM {t} WHERE run_id = ?", [run_id])
        io.upsert(con, "backtest.runs", pd.DataFrame([run_row]), ["run_id"])
        io.upsert(con, "backtest.trades", trades[keep].assign(run_id=run_id), ["run_id", "trade_id"])
        io.upsert(con, "backtest.equity", eq[["ts", "equity", "cash", "position_value", "gross_exposure", "n_positions", "drawdown",
                                              "benchmark_equity"]].assign(run_id=run_id), ["run_id", "ts"])
        io.record_inputs(con, f"backtest.{bt.strategy}", io.inputs_fingerprint(
            con, "SELECT count(*) FROM backtest.runs WHERE run_id = '" + run_id + "'", params_blob))
    compare = _compare(m, bench)
    return dg.MaterializeResult(
        metadata={"run_id": run_id, "sample": "out-of-sample (calibrated walk-forward folds)",
                  "period": f"{period[0]} .. {period[1]}", "universe": ", ".join(symbols),
                  "costs": f"fee {costs.fee_taker_bps} bps taker / {costs.fee_maker_bps} bps maker, slippage "
                           f"{costs.slippage_bps} bps, latency {costs.latency_bars} bars",
                  "metrics_vs_buy_and_hold": md_table(compare),
                  "per_symbol": md_table(out.per_symbol.round(4)), "n_trades": len(trades),
                  "exit_reasons": md_table(trades["exit_reason"].value_counts().rename_axis("reason").reset_index()),
                  "equity": png_md(png, "equity"),
                  "mlflow_run": dg.MetadataValue.url(mlflow.run_url(exp_id, mlflow_run_id)),
                  "sql": f"SELECT * FROM backtest.trades WHERE run_id = '{run_id}'"},
        check_results=[dg.AssetCheckResult(check_name=ACCOUNTING_RECONCILES, passed=recon_err < 1e-6 * bt.init_cash and bad_order == 0,
                                           severity=dg.AssetCheckSeverity.ERROR,
                                           metadata={"abs_error": recon_err, "trades_exit_before_entry": bad_order})])
