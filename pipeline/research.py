"""The baseline research flow: read the warehouse, label, walk-forward, predict out of sample, backtest.

Dagster-free so the ``ml``/``backtest`` assets and the ``trader walk-forward`` command share one code path;
it reads DuckDB through a connection handed in by the caller and otherwise calls pure code only
(:mod:`models`, :mod:`pipeline.core`). Nothing here writes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.datasets import MODEL_FEATURES, model_features
from models.labels import triple_barrier
from models.splits import Fold, parse_window, walk_forward
from models.trainers import ModelSpec
from models.walkforward import WalkForwardResult, predict_out_of_sample, walk_forward_fit
from pipeline.config import BacktestConfig, BaselineModelConfig, CostsConfig
from pipeline.core.backtest import buy_and_hold, combine_sleeves, performance
from pipeline.core.simulator import SimParams, SimResult, simulate
from pipeline.core.timeframes import timeframe_ms
from warehouse import io


def load_series(con, exchange: str, symbol: str, timeframe: str) -> pd.DataFrame:
    """Candles joined with their features and regimes for one series, sorted by ``ts`` (empty if absent)."""
    return io.read_df(con, """
        SELECT o.ts, o.open, o.high, o.low, o.close, f.* EXCLUDE (exchange, symbol, timeframe, ts, close, open_time),
               r.trend_regime, r.volatility_level, r.natr_pct_rank, r.regime_confidence
        FROM market.ohlcv o
        JOIN features.technical f USING (exchange, symbol, timeframe, ts)
        LEFT JOIN regimes.market r USING (exchange, symbol, timeframe, ts)
        WHERE o.exchange = ? AND o.symbol = ? AND o.timeframe = ? ORDER BY o.ts""", [exchange, symbol, timeframe])


def labelled_frame(series: pd.DataFrame, cfg: BaselineModelConfig) -> pd.DataFrame:
    """Model inputs + triple-barrier label for one series: ``ts``, ``label_end_ts``, ``win``, ``MODEL_FEATURES``.

    Row ``t``'s features use bars ``<= t``; its label uses bars ``t+1 .. label_end_ts``. Unlabelled rows
    (warm-up ATR, the last ``max_bars``) keep NaN ``win``.
    """
    x = model_features(series, series[["ts", "trend_regime", "volatility_level", "natr_pct_rank", "regime_confidence"]])
    lab = triple_barrier(series.assign(atr=series["atr_14"]), cfg.label.tp_atr, cfg.label.sl_atr, cfg.label.max_bars)
    x["label_end_ts"] = lab["label_end_ts"].to_numpy()
    x["win"] = lab["win"].to_numpy()
    x["barrier_ret"] = lab["barrier_ret"].to_numpy()
    return x


@dataclass
class WindowSpec:
    train_ms: int
    test_ms: int
    purge_ms: int
    embargo_ms: int
    expanding: bool


def window_spec(cfg: BaselineModelConfig, train: str | None = None, test: str | None = None,
                purge: str | None = None, embargo: str | None = None, expanding: bool | None = None) -> WindowSpec:
    """Walk-forward windows in ms from config (CLI values override)."""
    step = timeframe_ms(cfg.timeframe)
    w = cfg.walk_forward
    return WindowSpec(parse_window(train or w.train_window, step), parse_window(test or w.test_window, step),
                      parse_window(purge or w.purge, step), parse_window(embargo or w.embargo, step),
                      w.expanding if expanding is None else expanding)


@dataclass
class BaselineRun:
    """Training data (pooled training symbols, labelled rows), folds and the walk-forward result."""

    data: pd.DataFrame
    folds: list[Fold]
    result: WalkForwardResult
    windows: WindowSpec


def train_baseline(con, exchange: str, cfg: BaselineModelConfig, windows: WindowSpec, fit_final: bool = True) -> BaselineRun:
    """Pool the training symbols, label them, split purged walk-forward and fit.

    Raises:
        ValueError: a training symbol has no rows, or no fold fits in the history.
    """
    parts = []
    for sym in cfg.train_symbols:
        s = load_series(con, exchange, sym, cfg.timeframe)
        if s.empty:
            raise ValueError(f"no {cfg.timeframe} feature rows for training symbol {sym}; run the features first")
        parts.append(labelled_frame(s, cfg).assign(symbol=sym))
    data = pd.concat(parts, ignore_index=True)
    data = data[data["win"].notna() & (data["label_end_ts"] >= 0)].sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)
    folds = walk_forward(data["ts"].to_numpy(), data["label_end_ts"].to_numpy(), train_ms=windows.train_ms,
                         test_ms=windows.test_ms, purge_ms=windows.purge_ms, embargo_ms=windows.embargo_ms,
                         expanding=windows.expanding, min_train_rows=1000)
    spec = ModelSpec(kind=cfg.kind, params=cfg.params, seed=cfg.seed)
    res = walk_forward_fit(data[MODEL_FEATURES], data["win"].to_numpy(), folds, spec, calibration=cfg.calibration,
                           min_calibration_rows=cfg.walk_forward.min_calibration_rows, fit_final=fit_final,
                           t1=data["label_end_ts"].to_numpy())
    return BaselineRun(data, folds, res, windows)


def predictions_for(con, exchange: str, symbols: list[str], cfg: BaselineModelConfig, run: BaselineRun) -> pd.DataFrame:
    """Out-of-sample probabilities for every bar of every symbol that falls in a fold's test window.

    Training symbols reuse their out-of-fold predictions; other symbols are scored by the fold model of the
    window (never trained on them, never trained on that window). Columns: ``symbol``, ``ts``, ``fold``,
    ``p_raw``, ``p_cal``, ``win``, ``label_end_ts``.
    """
    out = []
    oof = run.result.oof.merge(run.data[["symbol", "ts", "label_end_ts", "win"]], left_on="row", right_index=True)
    for sym in symbols:
        if sym in cfg.train_symbols:
            o = oof[oof["symbol"] == sym]
            out.append(o[["symbol", "ts", "fold", "p_raw", "p_cal", "win", "label_end_ts"]])
            continue
        s = load_series(con, exchange, sym, cfg.timeframe)
        if s.empty:
            continue
        x = labelled_frame(s, cfg)
        p = predict_out_of_sample(run.result.fold_models, x[MODEL_FEATURES], x["ts"].to_numpy())
        keep = p["fold"].to_numpy() >= 0
        out.append(pd.DataFrame({"symbol": sym, "ts": x["ts"].to_numpy()[keep], "fold": p["fold"].to_numpy()[keep],
                                 "p_raw": p["p_raw"].to_numpy()[keep], "p_cal": p["p_cal"].to_numpy()[keep],
                                 "win": x["win"].to_numpy()[keep], "label_end_ts": x["label_end_ts"].to_numpy()[keep]}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def sim_params(bt: BacktestConfig, model: BaselineModelConfig, costs: CostsConfig, init_cash: float) -> SimParams:
    """Simulator parameters of the baseline long/flat strategy (levels default to the label's barriers)."""
    return SimParams(init_cash=init_cash, sl_atr=bt.sl_atr or model.label.sl_atr, tp_atr=bt.tp_atr or model.label.tp_atr,
                     max_bars=bt.max_bars or model.label.max_bars, fee_taker_bps=costs.fee_taker_bps,
                     fee_maker_bps=costs.fee_maker_bps, slippage_bps=costs.slippage_bps, latency_bars=costs.latency_bars)


@dataclass
class BacktestOutput:
    trades: pd.DataFrame       # simulator trades + symbol
    orders: pd.DataFrame
    equity: pd.DataFrame       # portfolio per bar + benchmark_equity + drawdown
    metrics: dict
    benchmark: dict
    per_symbol: pd.DataFrame
    params: SimParams
    period: tuple[int, int]


def backtest_baseline(con, exchange: str, preds: pd.DataFrame, bt: BacktestConfig, model: BaselineModelConfig,
                      costs: CostsConfig, symbols: list[str]) -> BacktestOutput:
    """Long/flat on calibrated OOS probabilities through the simulator, one sleeve per symbol.

    The period is the span of calibrated predictions (out of sample); each sleeve trades only bars that have
    a calibrated probability. Buy-and-hold of the same symbols over the same period is the benchmark.
    """
    step = timeframe_ms(model.timeframe)
    have = preds[preds["p_cal"].notna()]
    if have.empty:
        raise ValueError("no calibrated out-of-sample predictions to backtest; train the model first")
    start, end = int(have["ts"].min()), int(have["ts"].max())
    each = bt.init_cash / len(symbols)
    params = sim_params(bt, model, costs, each)
    sleeves: dict[str, SimResult] = {}
    closes = {}
    rows = []
    for sym in symbols:
        bars = io.read_df(con, """SELECT o.ts, o.open, o.high, o.low, o.close, f.atr_14 AS atr FROM market.ohlcv o
            JOIN features.technical f USING (exchange, symbol, timeframe, ts)
            WHERE o.exchange=? AND o.symbol=? AND o.timeframe=? AND o.ts BETWEEN ? AND ? ORDER BY o.ts""",
                          [exchange, sym, model.timeframe, start, end])
        if bars.empty:
            continue
        p = bars[["ts"]].merge(have[have["symbol"] == sym][["ts", "p_cal"]], on="ts", how="left")["p_cal"].to_numpy()
        signal = np.where(p >= bt.enter_threshold, 1, 0)
        fine = None
        if bt.resolve_intrabar_with and timeframe_ms(bt.resolve_intrabar_with) < step:
            fine = io.read_df(con, "SELECT ts, high, low FROM market.ohlcv WHERE exchange=? AND symbol=? AND timeframe=? "
                                   "AND ts BETWEEN ? AND ? ORDER BY ts", [exchange, sym, bt.resolve_intrabar_with, start, end + step])
        r = simulate(bars, signal, params, fine=fine, step_ms=step)
        sleeves[sym] = r
        closes[sym] = bars[["ts", "close"]]
        r.trades.insert(0, "symbol", sym)
        r.orders.insert(0, "symbol", sym)
        rows.append({"symbol": sym, **{k: v for k, v in performance(r.bars["ts"].to_numpy(), r.bars["equity"].to_numpy(),
                                                                       r.trades).items() if k in PER_SYMBOL_COLUMNS}})
    port = combine_sleeves(sleeves, each)
    bench = buy_and_hold(closes, start, end, bt.init_cash)
    port = port.merge(bench.rename(columns={"equity": "benchmark_equity"}), on="ts", how="left")
    port["benchmark_equity"] = port["benchmark_equity"].ffill().fillna(bt.init_cash)
    port["drawdown"] = port["equity"] / port["equity"].cummax() - 1.0
    trades = pd.concat([r.trades for r in sleeves.values()], ignore_index=True) if sleeves else pd.DataFrame()
    orders = pd.concat([r.orders for r in sleeves.values()], ignore_index=True) if sleeves else pd.DataFrame()
    closed = trades[trades["exit_reason"] != "open"] if len(trades) else trades
    metrics = performance(port["ts"].to_numpy(), port["equity"].to_numpy(), closed, port["gross_exposure"].to_numpy())
    benchmark = performance(bench["ts"].to_numpy(), bench["equity"].to_numpy())
    return BacktestOutput(trades, orders, port, metrics, benchmark, pd.DataFrame(rows), params, (start, end))


PER_SYMBOL_COLUMNS = ("total_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "profit_factor", "avg_r")


def clean_metrics(m: dict) -> dict:
    """JSON-safe metrics (NaN/inf -> None, numpy scalars -> float)."""
    out = {}
    for k, v in m.items():
        if isinstance(v, (float, np.floating)):
            out[k] = None if not math.isfinite(float(v)) else float(v)
        else:
            out[k] = v
    return out
