"""Group ``research``: the baseline long/flat strategy on out-of-sample probabilities, all universe symbols.

Writes one ``backtest.runs`` row (params, period, universe, costs, metrics, buy-and-hold benchmark, code
version), its ``backtest.trades`` and ``backtest.equity`` (``warehouse.runs.write_backtest``); logs the same to
MLflow (experiment ``backtests``) with the equity/drawdown plot. Launchpad config overrides costs and the entry
threshold (``trader backtest --fee-bps ... --slippage-bps ... --latency ...``).
"""

import hashlib
import json
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.checks import reconcile_result
from assets.common import POOL, if_unchanged, md_table, png_md, rounded
from assets.keys import ACCOUNTING_RECONCILES, BASELINE, BASELINE_BACKTEST, GROUP_RESEARCH
from pipeline.config import settings
from pipeline.core.backtest import equity_plot, long_flat_backtest, long_flat_params
from pipeline.core.metrics import METRICS_VERSION
from pipeline.core.timeframes import timeframe_ms
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io, readers, runs

CODE_VERSION = "1"
#: the metrics table of the run (pipeline.core.metrics.metrics keys; daily UTC closes, 365 periods a year)
SUMMARY_KEYS = [
    "total_return",
    "annual_return",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_days",
    "calmar",
    "n_trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "expectancy_ret",
    "avg_r",
    "exposure",
    "turnover",
    "psr",
    "dsr",
    "n_trials",
    "total_return_gross",
    "annual_return_gross",
    "cost_drag",
    "cost_bps",
    "breakeven_cost_bps",
]


class BacktestRunConfig(dg.Config):
    """Overrides of ``research.backtest`` for one run (unset = configuration value)."""

    fee_bps: Optional[float] = Field(None, description="Taker and maker fee, bps of notional.")
    slippage_bps: Optional[float] = Field(None, description="Slippage on market/stop fills, bps.")
    latency_bars: Optional[int] = Field(None, description="Extra bars between decision and execution.")
    enter_threshold: Optional[float] = Field(None, description="Go long when calibrated p >= this.")
    force: bool = Field(False, description="Re-run even if predictions and parameters are unchanged.")


def _compare(m: dict, bench: dict) -> pd.DataFrame:
    """Strategy next to buy-and-hold, one row per summary metric (rounded for display)."""
    return pd.DataFrame(
        [{"metric": k, "strategy": rounded(m.get(k)), "buy_and_hold": rounded(bench.get(k))} for k in SUMMARY_KEYS]
    )


def stored_costs(bt) -> dict:
    """The costs as ``backtest.runs.costs`` (and MLflow) store them: the simulator's ``fee_taker_bps`` /
    ``fee_maker_bps`` / ``slippage_bps`` and the latency in bars."""
    return {**bt.costs.sim_kwargs(), "latency_bars": bt.latency_bars}


def with_overrides(bt, config: BacktestRunConfig):
    """``research.backtest`` with the run's Launchpad overrides applied (costs, latency, entry threshold)."""
    costs = bt.costs.model_copy(
        update={
            k: v
            for k, v in {
                "taker_fee_bps": config.fee_bps,
                "maker_fee_bps": config.fee_bps,
                "slippage_bps": config.slippage_bps,
            }.items()
            if v is not None
        }
    )
    return bt.model_copy(
        update={
            k: v
            for k, v in {
                "costs": costs,
                "latency_bars": config.latency_bars,
                "enter_threshold": config.enter_threshold,
            }.items()
            if v is not None
        }
    )


def _read_bars(con, ex: str, symbols: list[str], tf: str, fine_tf: str | None, start: int, end: int):
    """Simulator bars per symbol over ``[start, end]`` and, when ``fine_tf`` is finer than ``tf``, its high/low."""
    step = timeframe_ms(tf)
    cols = ["ts", "open", "high", "low", "close", "atr"]
    bars = {s: readers.bars(con, ex, s, tf, start, end)[cols] for s in symbols}
    finer = bool(fine_tf) and timeframe_ms(fine_tf) < step
    fine = {
        s: readers.high_low(con, ex, s, fine_tf, start, end + step) if finer and len(b) else None
        for s, b in bars.items()
    }
    return bars, fine


def _run_row(run_id, bt, b, symbols, out, m, bench, model_run_id, mlflow_run_id, context) -> dict:
    return runs.backtest_run_row(
        run_id=run_id,
        desk="research",
        strategy=bt.strategy,
        sample="out_of_sample",
        period_start=pd.Timestamp(out.period[0], unit="ms"),
        period_end=pd.Timestamp(out.period[1], unit="ms"),
        timeframe=b.timeframe,
        universe=symbols,
        params={"enter_threshold": bt.enter_threshold, **out.params.to_dict()},
        costs=stored_costs(bt),
        metrics=m,
        benchmark=bench,
        per_symbol=out.per_symbol.to_json(orient="records"),
        model_name=b.name,
        model_run_id=model_run_id,
        mlflow_run_id=mlflow_run_id,
        code_version=CODE_VERSION,
        dagster_run_id=context.run_id,
    )


@dg.asset(
    key=BASELINE_BACKTEST,
    group_name=GROUP_RESEARCH,
    pool=POOL,
    deps=[BASELINE],
    kinds={"numba", "duckdb", "mlflow"},
    code_version=CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec(
            ACCOUNTING_RECONCILES,
            asset=BASELINE_BACKTEST,
            blocking=True,
            description="Final equity = initial cash + sum of trade PnL (closed and marked-open), "
            "and no trade exits before it enters.",
        )
    ],
    description="Long/flat on the baseline model's calibrated out-of-sample p(TP first) over every universe symbol "
    "(1h), ATR stop/target and time stop through the engine (one shared-cash book, research.backtest.book / "
    "max_positions), with fees, slippage and latency; "
    "versus equal-weight buy-and-hold over the same period.",
)
def backtest_baseline(
    context: dg.AssetExecutionContext, config: BacktestRunConfig, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    cfg = settings()
    bt, b, ex = with_overrides(cfg.research.backtest, config), cfg.research.baseline, cfg.exchange.id
    symbols = bt.symbols or cfg.universe.symbols
    with warehouse.connect() as con:
        model_run, run_id, blob = _identity(con, bt, b, symbols)
        fp = _fingerprint(con, run_id, blob)
        stored = _stored(con, run_id)
        checks = (ACCOUNTING_RECONCILES,)
        if skip := if_unchanged(
            context, con, f"backtest.{bt.strategy}", fp, SKIPPED, checks=checks, metadata=stored, force=config.force
        ):
            return skip
        preds, bars, fine = _read(con, ex, b, bt, symbols)
    params = long_flat_params(bt, b.label, bt.init_cash / len(symbols))
    out = long_flat_backtest(
        bars,
        preds,
        bt.enter_threshold,
        params,
        bt.init_cash,
        timeframe_ms(b.timeframe),
        fine,
        book=bt.book,
        max_positions=bt.max_positions,
    )
    m, bench, eq = runs.clean_metrics(out.metrics), runs.clean_metrics(out.benchmark), out.equity
    png = _plot(eq, bt, symbols)
    logged = mlflow.log_backtest(
        run_id, _tags(context, model_run, out), _mlflow_params(bt, symbols, out), m, bench, {EQUITY_PNG: png}
    )
    row = _run_row(run_id, bt, b, symbols, out, m, bench, model_run, logged.run_id, context)
    with warehouse.connect() as con, io.transaction(con):
        runs.write_backtest(con, row, runs.simulator_trades(out.trades), eq)
        io.record_inputs(con, f"backtest.{bt.strategy}", _fingerprint(con, run_id, blob))  # with the run now stored
    return dg.MaterializeResult(
        metadata=rounded(_metadata(run_id, bt, symbols, out, m, bench, png, logged)),
        check_results=[reconcile_result(float(eq["equity"].iloc[-1]), bt.init_cash, out.trades)],
    )


SKIPPED = "predictions and parameters unchanged; not re-run (figures of the stored run)"
EQUITY_PNG = "equity_drawdown.png"


def _plot(eq: pd.DataFrame, bt, symbols: list[str]) -> bytes:
    title = f"{bt.strategy}: out-of-sample, {len(symbols)} symbols, fee {bt.costs.taker_fee_bps} bps"
    return equity_plot(eq["ts"].to_numpy(), eq["equity"].to_numpy(), eq["benchmark_equity"].to_numpy(), title)


def _identity(con, bt, b, symbols: list[str]) -> tuple[str, str, str]:
    """``(predictions' MLflow run, backtest run id, parameter blob)``: the run id hashes the parameters and the run.

    Raises:
        dagster.Failure: no predictions are stored yet.
    """
    model_run, n_preds = readers.predictions_run(con, b.name)
    if not n_preds:
        raise dg.Failure(f"ml.predictions has no rows for {b.name}; materialise ml/baseline_direction first")
    # the run id hashes the parameters in their stored form (costs with the latency, as in backtest.runs.costs), so a
    # run keeps the id it had before costs became one class and an existing warehouse gets no duplicate run
    costs = stored_costs(bt)
    params = {
        "bt": {**bt.model_dump(exclude={"latency_bars"}), "costs": costs},
        "costs": costs,
        "symbols": symbols,
        "model_run": model_run,
        "code": CODE_VERSION,
    }
    blob = json.dumps(params, sort_keys=True, default=str)
    return model_run, f"{bt.strategy}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}", blob


def _read(con, ex: str, b, bt, symbols: list[str]):
    """The stored predictions and, over their calibrated span, every symbol's bars and finer high/low."""
    preds = readers.baseline_predictions(con, b.name, b.timeframe)
    have = preds[preds["p_cal"].notna()]
    start, end = (int(have["ts"].min()), int(have["ts"].max())) if len(have) else (0, -1)
    return (preds, *_read_bars(con, ex, symbols, b.timeframe, bt.resolve_intrabar_with, start, end))


def _metadata(run_id: str, bt, symbols: list[str], out, m: dict, bench: dict, png: bytes, logged) -> dict:
    return {
        "run_id": run_id,
        "sample": "out-of-sample (calibrated walk-forward folds)",
        "period": f"{pd.Timestamp(out.period[0], unit='ms')} .. {pd.Timestamp(out.period[1], unit='ms')}",
        "universe": ", ".join(symbols),
        "costs": _costs_text(bt),
        "metrics_vs_buy_and_hold": md_table(_compare(m, bench)),
        "per_symbol": md_table(out.per_symbol),
        "n_trades": len(out.trades),
        "exit_reasons": md_table(out.trades["exit_reason"].value_counts().rename_axis("reason").reset_index()),
        "equity": png_md(png, "equity"),
        "mlflow_run": dg.MetadataValue.url(logged.url),
        "sql": f"SELECT * FROM backtest.trades WHERE run_id = '{run_id}'",
    }


def _fingerprint(con, run_id: str, blob: str) -> str:
    """The predictions' run, the parameters, the metrics' version, and whether this run is stored (a deleted run
    re-runs)."""
    sql = f"SELECT count(*) FROM backtest.runs WHERE run_id = '{run_id}'"
    return io.inputs_fingerprint(con, sql, blob + METRICS_VERSION)  # new metric definitions re-score the same run


def _stored(con, run_id: str) -> dict:
    """Metadata of the stored run (shown when the asset skips)."""
    row = io.read_df(
        con, "SELECT metrics, benchmark, period_start, period_end, costs FROM backtest.runs WHERE run_id = ?", [run_id]
    )
    if row.empty:
        return {}
    m, bench = json.loads(row["metrics"][0]), json.loads(row["benchmark"][0])
    return {
        "run_id": run_id,
        "period": f"{row['period_start'][0]} .. {row['period_end'][0]}",
        "costs": row["costs"][0],
        "metrics_vs_buy_and_hold": md_table(_compare(m, bench)),
    }


def _costs_text(bt) -> str:
    c = bt.costs
    return (
        f"fee {c.taker_fee_bps} bps taker / {c.maker_fee_bps} bps maker, slippage {c.slippage_bps} bps, "
        f"latency {bt.latency_bars} bars"
    )


def _tags(context, model_run, out) -> dict:
    return {
        "desk": "research",
        "dagster_run_id": context.run_id,
        "dagster_asset_key": BASELINE_BACKTEST.to_user_string(),
        "code_version": CODE_VERSION,
        "model_run_id": str(model_run),
        "sample": "out_of_sample",
        "data_start": pd.Timestamp(out.period[0], unit="ms").isoformat(),
        "data_end": pd.Timestamp(out.period[1], unit="ms").isoformat(),
    }


def _mlflow_params(bt, symbols, out) -> dict:
    return {
        "strategy": bt.strategy,
        "enter_threshold": bt.enter_threshold,
        "symbols": ",".join(symbols),
        **stored_costs(bt),
        **{f"sim_{k}": v for k, v in out.params.to_dict().items() if v is not None},
    }
